"""Errors of the annotation app's service layer; routes and the CLI translate each to one status/exit code."""

from __future__ import annotations

__all__ = [
    "AppError",
    "NotFoundError",
    "ConflictError",
    "InvalidInputError",
    "PermissionDeniedError",
    "LeaseError",
    "AuthenticationError",
    "RateLimitedError",
    "BusyError",
    "SettingsError",
]


class AppError(Exception):
    """Base class of every error the app's services raise on purpose."""

    http_status: int = 400
    exit_code: int = 1


class InvalidInputError(AppError):
    """Malformed or out-of-range input (unknown label, bad role, invalid URL...)."""

    http_status = 422
    exit_code = 2


class SettingsError(InvalidInputError):
    """An ``EMOTIONS_*`` variable (or ``.env`` line) with a value the settings refuse."""


class NotFoundError(AppError):
    http_status = 404
    exit_code = 3


class ConflictError(AppError):
    """The request contradicts the current state (duplicate name, stage already closed...)."""

    http_status = 409
    exit_code = 4


class PermissionDeniedError(AppError):
    http_status = 403
    exit_code = 5


class LeaseError(AppError):
    """A submission for a clip that is not (or no longer) leased to this annotator."""

    http_status = 409
    exit_code = 6


class AuthenticationError(AppError):
    http_status = 401
    exit_code = 7


class RateLimitedError(AppError):
    """Too many tries; ``retry_after_s`` (when known) becomes the response's ``Retry-After``."""

    http_status = 429
    exit_code = 8

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BusyError(RateLimitedError):
    """The process is at its budget of costly work (password checks) for the moment: a 503 with
    ``Retry-After``, not the caller's fault."""

    http_status = 503
