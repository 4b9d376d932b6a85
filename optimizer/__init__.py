"""Offer selection and market mechanisms.

Three subpackages, each with a fixed ``__all__`` that other packages import from:

* :mod:`optimizer.selection` -- the six criteria of SRS table 3, the GA, the exact MILP and greedy
  (what a node uses to rank candidate offers);
* :mod:`optimizer.markets` -- the literature's mechanisms: uniform-price double auction,
  continuous matching, NSGA-II welfare optimisation, cooperative pooling and feeder accounting;
* :mod:`optimizer.powerflow` -- radial feeders from pandapower networks and a vectorised
  backward-forward sweep load flow.

They are not re-exported here on purpose: the load flow pulls in pandapower, which a meter-class
node that only selects offers should not have to import.
"""

__all__: list[str] = []
