"""The simulator's subcommands of ``p2pnode``: ``simulate``, ``sweep``, ``market`` /
``powerflow`` and ``meternode``.

Each module exposes ``register(subparsers)`` and is listed in the ``p2pnode.commands``
entry-point group of ``pyproject.toml``; :mod:`p2pnode.cli` finds them there, so the node
package never imports the simulator.  They need the ``[sim]`` extra.
"""
