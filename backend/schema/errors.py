"""Typed errors returned as data by mutations, and the masking of unexpected ones."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLError

from backend import errors
from backend.frameworks.strawberry_internals import MaskErrorsWithHook


@strawberry.enum(description="Machine-readable error codes.")
class ErrorCode(Enum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    VALIDATION = "VALIDATION"
    TEMPLATE_SYNTAX = "TEMPLATE_SYNTAX"
    WORKFLOW_STEP = "WORKFLOW_STEP"
    TEMPLATE_RENDER = "TEMPLATE_RENDER"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


@strawberry.interface(description="An expected failure, returned as data.")
class Error:
    code: ErrorCode = strawberry.field(description="What went wrong, for programs.")
    message: str = strawberry.field(description="What went wrong, for people.")
    field: str | None = strawberry.field(
        default=None, description="The input field at fault (e.g. `content[0].subject`)."
    )


@strawberry.type(description="The request carries no valid access token.")
class UnauthenticatedError(Error):
    pass


@strawberry.type(description="The token is valid but its roles do not allow this operation.")
class ForbiddenError(Error):
    pass


@strawberry.type(description="An input value is invalid; `field` names it.")
class ValidationError(Error):
    pass


@strawberry.type(description="A template field has invalid syntax; `line` says where.")
class TemplateSyntaxError(Error):
    line: int | None = None


@strawberry.type(
    description="A workflow step is invalid: `step` names it, `field` the bad field's path."
)
class WorkflowStepError(Error):
    step: str | None = None


@strawberry.type(description="A template could not be rendered (missing variable, sandbox).")
class TemplateRenderError(Error):
    line: int | None = None


@strawberry.type(description="The thing asked for does not exist.")
class NotFoundError(Error):
    pass


@strawberry.type(description="The change conflicts with the current state (duplicate, in use).")
class ConflictError(Error):
    pass


@strawberry.type(description="Too many requests from this caller; retry after `retryAfterSeconds`.")
class RateLimitedError(Error):
    retry_after_seconds: float = strawberry.field(
        default=0.0, description="Seconds to wait before the same request can succeed."
    )


@strawberry.type(description="A store or the broker is unavailable; retry later.")
class UnavailableError(Error):
    pass


# What any mutation may return besides its own errors, the last members of its result union:
# the caller has no valid token or not the role, or a store is down.
AccessErrors = UnauthenticatedError | ForbiddenError | UnavailableError


_TYPES: dict[type[errors.HeraldError], type[Error]] = {
    errors.UnauthenticatedError: UnauthenticatedError,
    errors.ForbiddenError: ForbiddenError,
    errors.TemplateSyntaxError: TemplateSyntaxError,
    errors.WorkflowStepError: WorkflowStepError,
    errors.ValidationError: ValidationError,
    errors.TemplateRenderError: TemplateRenderError,
    errors.NotFoundError: NotFoundError,
    errors.ConflictError: ConflictError,
    errors.RateLimitedError: RateLimitedError,
    errors.UnavailableError: UnavailableError,
}

# Every error type, by name: most are reached only through mutation unions, so the schema
# lists them all to be sure each is in it.
ERROR_TYPES: list[type[Error]] = sorted(set(_TYPES.values()), key=lambda t: t.__name__)


def error_type_for(exc: errors.HeraldError) -> Error:
    """The GraphQL error type for a service error."""
    for cls in type(exc).__mro__:
        if cls in _TYPES:
            kwargs: dict[str, Any] = {
                "code": ErrorCode(exc.code),
                "message": exc.message,
                "field": exc.field,
            }
            if isinstance(exc, errors.TemplateError):
                kwargs["line"] = exc.line
            if isinstance(exc, errors.WorkflowStepError):
                kwargs["step"] = exc.step
            if isinstance(exc, errors.RateLimitedError):
                kwargs["retry_after_seconds"] = exc.retry_after_seconds
            return _TYPES[cls](**kwargs)
    raise TypeError(f"No GraphQL error type for {type(exc).__name__}")  # pragma: no cover


def _is_expected(error: GraphQLError) -> bool:
    original = error.original_error
    return original is None or isinstance(original, GraphQLError | errors.HeraldError)


class HeraldMaskErrors(MaskErrorsWithHook):
    """Mask unexpected exceptions; give Herald's own errors an ``extensions.code``."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: not _is_expected(error))

    def after_masking(self, processed: list[GraphQLError]) -> list[GraphQLError]:
        for error in processed:
            original = error.original_error
            if isinstance(original, errors.HeraldError):
                extensions = dict(error.extensions or {})
                extensions["code"] = original.code
                if original.field:
                    extensions["field"] = original.field
                if isinstance(original, errors.RateLimitedError):
                    extensions["retryAfterSeconds"] = original.retry_after_seconds
                error.extensions = extensions
            elif original is None and error.message == self.error_message:
                error.extensions = {"code": "INTERNAL"}
        return processed
