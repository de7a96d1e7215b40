"""The contract reference is generated from the code and must match it."""

from __future__ import annotations

from exchange.events import EVENT_FIELDS, FIELD_DOCS
from tools.docs import render

from .conftest import ROOT


def test_contract_page_matches_the_code() -> None:
    page = (ROOT / "docs" / "contract.md").read_text()
    assert page == render(), "docs/contract.md is stale: python -m tools.docs > docs/contract.md"


def test_every_event_field_is_documented() -> None:
    names = {n for fields in EVENT_FIELDS.values() for n in fields}
    assert names == set(FIELD_DOCS)


def test_the_roles_on_the_security_page_match_the_code() -> None:
    from journal.acl import documented, markdown

    page = (ROOT / "docs" / "security.md").read_text()
    assert documented(page) == markdown(), (
        "docs/security.md's roles are stale: replace the generated part with the output of "
        "python -m journal.acl")
