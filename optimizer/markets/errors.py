"""Errors of :mod:`optimizer.markets`.

    MarketError           base of every error raised here (a ValueError: the input is wrong)
    └── OrderError        an order, reading or configuration value is invalid; the message
                          names the order (or node) and the field

Outcomes of a market — nothing matched, no feasible dispatch — are results, never exceptions.
"""

from __future__ import annotations


class MarketError(ValueError):
    """Base of every error raised by :mod:`optimizer.markets`."""


class OrderError(MarketError):
    """An order, a meter reading or a configuration value is invalid (names the field)."""
