"""A property-based fuzz of the gateway from its own OpenAPI document (schemathesis).

Every operation the document describes is called with generated requests, valid (positive)
and invalid (negative), as an account, as the operator and with no key, against one real
``exch gateway`` (with ``exch run`` behind it, on a real redis-server) started once for the
module. What must hold for every request:

- no 5xx, ever;
- a 4xx is ``{"error": {"reason", "message"}}``, and sequenced nothing (the input journal's
  last seq did not move);
- without a key, every protected operation is 401;
- the response conforms to the document (status code, content type, body schema), and an
  invalid request is refused (schemathesis' own checks).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from journal.connection import connect
from journal.keys import Keys
from journal.streams import raw
from tools.gateway.openapi import document

from .conftest import RedisProcess
from .gateway_helpers import Exchange, running_exchange

pytestmark = pytest.mark.timeout(300)


def _without_security(doc: dict) -> dict:
    """The document with its security requirements left out: each test sends its own key
    (or none), and says itself what a missing key must get (401). Left in, schemathesis
    would also drop the header in its negative cases, which the key sent here would undo."""
    doc = copy.deepcopy(doc)
    doc["components"].pop("securitySchemes", None)
    for item in doc["paths"].values():
        for op in item.values():
            op.pop("security", None)
    return doc


SECURED = {(path, method.upper()) for path, item in document()["paths"].items()
           for method, op in item.items() if op.get("security")}
"""The operations that need a key."""

schema = schemathesis.openapi.from_dict(_without_security(document()))
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
"""Every phase: the document's examples, its coverage cases (each constraint's edges and
each one broken: most of the run time) and a few random requests per operation."""

long_schema = schemathesis.openapi.from_dict(_without_security(document()))
long_schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
long_schema.config.phases.update(phases=["fuzzing"])
"""Random requests only, many more of them (the slow run)."""

K = Keys()

EXCLUDED = [openapi_checks.positive_data_acceptance]
"""A request the document calls valid may still be refused with a 400 and the contract's
reason: the document gives each field's shape, not the exchange's ranges (a stake of "0",
more money than there is, a market that does not exist)."""


class Live:
    """The module's running exchange, and a Redis connection to read the journal with."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.redis = connect(ex.redis_url)

    def journal_length(self) -> int:
        last = raw(self.redis).xrevrange(K.input, count=1)
        return int(last[0][0].split(b"-")[0]) if last else 0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = RedisProcess(tmp_path_factory.mktemp("fuzz") / "redis")
    server.start()
    try:
        with running_exchange(server, gateway_args=(
                "--rate", "1000000", "--burst", "1000000", "--outcome-timeout", "2")) as ex:
            live = Live(ex)
            # something to find: a resting order of bob's, so that alice's generated order
            # ids may hit another account's order
            with ex.client("bob") as bob:
                r = bob.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "BACK",
                                                 "price": "2", "stake": "5"})
                assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
            yield live
            live.redis.close()
    finally:
        server.stop()


def error_shape(response) -> None:  # type: ignore[no-untyped-def]
    body = response.json()
    assert type(body) is dict and set(body) == {"error"}, body
    err = body["error"]
    assert type(err) is dict and type(err.get("reason")) is str and err["reason"], body
    assert type(err.get("message")) is str, body


def check(case: schemathesis.Case, who: str | None, live: Live) -> None:
    """Send ``case`` as ``who`` (None: no key) and hold the answer to the module's laws."""
    headers = live.ex.headers(who) if who else {}
    before = live.journal_length()
    response = case.call(base_url=live.ex.base, headers=headers, timeout=30)
    after = live.journal_length()
    assert response.status_code < 500, (response.status_code, response.text)
    if 400 <= response.status_code < 500:
        error_shape(response)
        assert after == before, f"a {response.status_code} sequenced {after - before} commands"
    if who is None and (case.path, case.method.upper()) in SECURED:
        # 401, unless there is no such route at all (a path that is not one, a method)
        assert response.status_code == 401 or response.json()["error"]["reason"] in (
            "NOT_FOUND", "METHOD_NOT_ALLOWED"), (response.status_code, response.text)
    case.validate_response(response, headers=headers, excluded_checks=EXCLUDED)


SETTINGS = {"deadline": None, "suppress_health_check": list(hypothesis.HealthCheck)}


@pytest.mark.parametrize("who", ["alice", "operator", None])
@schema.parametrize()
@hypothesis.settings(max_examples=15, **SETTINGS)
def test_the_gateway_answers_every_generated_request_by_its_document(
        case: schemathesis.Case, who: str | None, live: Live) -> None:
    check(case, who, live)


@pytest.mark.slow
@pytest.mark.parametrize("who", ["alice", "operator", None])
@long_schema.parametrize()
@hypothesis.settings(max_examples=50, **SETTINGS)
def test_many_more_random_requests_by_the_document(
        case: schemathesis.Case, who: str | None, live: Live) -> None:
    check(case, who, live)
