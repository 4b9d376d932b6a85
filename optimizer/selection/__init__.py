"""Offer selection (SRS 3.2.5): rank candidate offers for a buyer over the six criteria.

Pure core: no network, files, clock or global RNG.  The node calls :func:`select_offers` with a
:class:`BuyRequest`, the :class:`Candidate` offers (with predicted quality and duration from
:mod:`models`) and a :class:`SelectionConfig`; it gets a :class:`Plan`.  The criteria and their
normalisation are documented in :mod:`optimizer.selection.criteria`.

Errors::

    SelectionError
    ├── InvalidInputError     a candidate or request field is bad (named)
    └── SelectionConfigError  a weight or setting is bad (named)
"""

from optimizer.selection.config import STRATEGIES, GaSettings, SelectionConfig, Weights
from optimizer.selection.criteria import CRITERIA
from optimizer.selection.errors import InvalidInputError, SelectionConfigError, SelectionError
from optimizer.selection.inputs import BuyRequest, Candidate
from optimizer.selection.instances import random_instance
from optimizer.selection.plan import Plan, PlanItem
from optimizer.selection.select import select_offers

__all__ = [
    "BuyRequest", "CRITERIA", "Candidate", "GaSettings", "InvalidInputError", "Plan", "PlanItem",
    "STRATEGIES", "SelectionConfig", "SelectionConfigError", "SelectionError", "Weights",
    "random_instance", "select_offers",
]
