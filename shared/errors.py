"""The one exception type for errors that users cause."""

from __future__ import annotations


class FarmError(Exception):
    """Bad input or an unreachable service: the CLI prints one line and exits with code 2."""
