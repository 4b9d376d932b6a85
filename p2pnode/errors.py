"""Errors of the p2pnode package.

    NodeError
    ├── IdentityError     the key file is missing, unreadable, malformed or too open
    └── ConfigError       a configuration value is wrong (names the field)
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error raised by the p2pnode package."""


class IdentityError(NodeError):
    """The node's key file cannot be used."""


class ConfigError(NodeError, ValueError):
    """A configuration value is missing or out of range; the message names the field."""
