"""A refused request: the HTTP status and a message naming what is wrong and how to fix it.

Every module of the server raises :class:`RequestError` for input it will not act on; the
handlers (:mod:`workbench.server._base`) answer it as ``{"message": ...}`` with its status.
"""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses: ``status`` and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
