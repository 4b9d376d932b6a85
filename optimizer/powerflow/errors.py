"""Errors of :mod:`optimizer.powerflow`.

    PowerFlowError        base of every error raised here (a ValueError: the input is wrong)
    └── FeederError       the network cannot be used as a radial feeder; names the table,
                          row and field (or the feeder name) that is wrong

A load flow that does not converge is an expected outcome, not an error: it is reported in
:attr:`PowerFlowResult.converged`.
"""

from __future__ import annotations


class PowerFlowError(ValueError):
    """Base of every error raised by :mod:`optimizer.powerflow`."""


class FeederError(PowerFlowError):
    """The network is not a supported radial feeder, or a feeder name is unknown."""
