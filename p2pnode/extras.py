"""Which optional extra of the ``p2p-energy`` distribution provides a missing module.

The base install is the node (DHT, negotiation, ledger, offer selection, the predictors'
runtime).  Commands and functions of other layers need an extra; when their import fails,
:func:`missing_extra` turns the ``ModuleNotFoundError`` into an error that says what to install.
"""

from __future__ import annotations

from p2pnode.errors import NodeError

__all__ = ["EXTRA_OF_MODULE", "MissingExtra", "missing_extra"]

DISTRIBUTION = "p2p-energy"
EXTRA_OF_MODULE = {
    "scipy": "sim", "pandas": "sim", "pvlib": "sim", "demandlib": "sim", "pandapower": "sim",
    "matplotlib": "sim", "pyarrow": "sim", "tqdm": "sim",
    "ray": "cluster", "distributed": "cluster", "dask": "cluster",
    "sklearn": "train", "threadpoolctl": "train",
}


class MissingExtra(NodeError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str):
        self.module, self.extra = module, extra
        self.install = f"pip install '{DISTRIBUTION}[{extra}]'"
        super().__init__(f"this needs the [{extra}] extra ({module} is not installed): "
                         f"{self.install}")


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The extra that provides the module ``exc`` could not find, or None if none does."""
    root = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(root)
    return MissingExtra(root, extra) if extra else None
