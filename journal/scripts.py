"""The Lua scripts, loaded once from the package's ``lua`` folder.

``redis.Redis.register_script`` gives objects that call EVALSHA and reload the script after a
NOSCRIPT error (a restarted Redis has an empty script cache), in pipelines too.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script


@cache
def source(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


def script(client: redis.Redis, name: str) -> Script:
    """A callable script bound to ``client``."""
    return client.register_script(source(name))
