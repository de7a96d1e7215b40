"""The sides, the six accounts the converted commands use, and their deposits.

The recording's book is held by two liquidity accounts, liquidity a trade needs beyond it by
two "fill" accounts, and the recorded trades are sent by two taker accounts (see
docs/betfair-import.md, "Accounts").
"""

from __future__ import annotations

from typing import Any

from exchange.limits import MAX_MONEY
from exchange.units import format_money

BACK = "BACK"
LAY = "LAY"

LP_BACK = "lp-back-1"
"""Holds the recording's available-to-lay money (``atl``) as resting BACK orders."""
LP_LAY = "lp-lay-1"
"""Holds the recording's available-to-back money (``atb``) as resting LAY orders."""
FILL_BACK = "lp-back-2"
"""Adds BACK liquidity a trade needs where the recorded book shows too little."""
FILL_LAY = "lp-lay-2"
"""Adds LAY liquidity a trade needs where the recorded book shows too little."""
TAKER_BACK = "taker-back-1"
"""Backs (IOC) to trade recorded volume against resting LAY money."""
TAKER_LAY = "taker-lay-1"
"""Lays (IOC) to trade recorded volume against resting BACK money."""
ACCOUNTS = (LP_BACK, LP_LAY, FILL_BACK, FILL_LAY, TAKER_BACK, TAKER_LAY)

MIN_STAKE = "0.01"
"""Recorded sizes go down to a penny, so the converted markets accept any whole-penny stake."""


def deposit_commands(amount: int) -> list[dict[str, Any]]:
    """The ``deposit`` commands (without ``ts``) giving every account ``amount`` pence, split
    into deposits the core accepts (at most ``MAX_MONEY`` each)."""
    out = []
    for account in ACCOUNTS:
        left = amount
        while left > 0:
            step = min(left, MAX_MONEY)
            out.append({"type": "deposit", "account": account, "amount": format_money(step)})
            left -= step
    return out
