"""Dollar amounts in flag messages: enough digits for per-call costs of a fraction of a cent."""

from __future__ import annotations

from decimal import Decimal

__all__ = ["format_usd"]


def format_usd(amount: Decimal) -> str:
    """`$1.25`, `$0.0042`, `$0.000015`: two decimals, or more for amounts under a cent."""
    if amount >= Decimal("0.01") or amount == 0:
        return f"${amount:,.2f}"
    return "$" + f"{amount:.6f}".rstrip("0")
