"""Errors of offer selection.

    SelectionError
    ├── InvalidInputError     a candidate offer or the buy request has a bad field (named)
    └── SelectionConfigError  a weight or a solver setting is out of range (named)

An infeasible request (the offers cannot cover the deficit) is not an error: it is a
:class:`~optimizer.selection.plan.Plan` with ``status == "infeasible"``.
"""

from __future__ import annotations


class SelectionError(Exception):
    """Base of every error raised by :mod:`optimizer.selection`."""


class InvalidInputError(SelectionError, ValueError):
    """A candidate or request field is missing or out of range; the message names the field."""


class SelectionConfigError(SelectionError, ValueError):
    """A weight or setting is out of range; the message names the field.  ``problems``:
    (field, value, reason) of each bad field, when known (see ``weight_problems``)."""

    def __init__(self, message: str, problems=()):
        super().__init__(message)
        self.problems = tuple(problems)
