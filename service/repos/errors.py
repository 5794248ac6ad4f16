"""Domain errors the repos raise; the API maps them to HTTP statuses in service.api.errors."""

from __future__ import annotations


class RepoError(Exception):
    """Base class; str(exc) is a message fit for users."""


class NotFound(RepoError):
    pass


class Conflict(RepoError):
    """The request clashes with existing state (duplicate name, resource in use, reused key)."""


class InvalidCursor(RepoError):
    pass
