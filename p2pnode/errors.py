"""Errors of the p2pnode package.

    NodeError
    ├── IdentityError     the key file is missing, unreadable, malformed or too open
    └── ConfigError       a configuration value is wrong (names the field)
        └── FileLimitError    a file is not a regular file, too big, or (a secret) not private
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error raised by the p2pnode package."""


class IdentityError(NodeError):
    """The node's key file cannot be used."""


class ConfigError(NodeError, ValueError):
    """A configuration value is missing or out of range; the message names the field."""


class FileLimitError(ConfigError):
    """A file the node was given cannot be read safely (see :mod:`p2pnode.files`)."""
