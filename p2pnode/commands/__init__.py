"""Command-line command groups of ``p2pnode`` (one module each, see :mod:`p2pnode.cli`)."""
