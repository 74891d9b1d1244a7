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
]


class AppError(Exception):
    """Base class of every error the app's services raise on purpose."""

    http_status: int = 400
    exit_code: int = 1


class InvalidInputError(AppError):
    """Malformed or out-of-range input (unknown label, bad role, invalid URL...)."""

    http_status = 422
    exit_code = 2


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
    http_status = 429
    exit_code = 8
