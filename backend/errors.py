"""Herald's error tree. Services raise these; transports turn them into typed results.

::

    HeraldError                       code: INTERNAL
    ├── AuthError
    │   ├── UnauthenticatedError      code: UNAUTHENTICATED  (missing, bad, expired token)
    │   └── ForbiddenError            code: FORBIDDEN        (valid token, wrong role)
    ├── ValidationError               code: VALIDATION       (bad input; ``field`` names it)
    │   ├── TemplateSyntaxError       code: TEMPLATE_SYNTAX  (``line`` says where)
    │   └── WorkflowStepError         code: WORKFLOW_STEP    (``step`` names the workflow step)
    ├── TemplateRenderError           code: TEMPLATE_RENDER  (missing variable, sandbox refusal)
    ├── NotFoundError                 code: NOT_FOUND
    ├── ConflictError                 code: CONFLICT         (duplicate slug, template in use)
    ├── RateLimitedError              code: RATE_LIMITED     (``retry_after_seconds`` says when)
    └── UnavailableError              code: UNAVAILABLE      (a store or the broker is down)
        └── UserDirectoryUnavailable  code: UNAVAILABLE      (the auth service failed or refused)

Every error carries a machine-readable ``code`` and a ``message`` a person can read.
``TemplateSyntaxError`` and ``TemplateRenderError`` also share ``TemplateError``'s ``line``.
"""

from __future__ import annotations


class HeraldError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class AuthError(HeraldError):
    code = "UNAUTHENTICATED"


class UnauthenticatedError(AuthError):
    code = "UNAUTHENTICATED"


class ForbiddenError(AuthError):
    code = "FORBIDDEN"


class ValidationError(HeraldError):
    code = "VALIDATION"


class TemplateError(HeraldError):
    """An error in a template's text: ``line`` says where, when known."""

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None) -> None:
        super().__init__(message, field=field)
        self.line = line


class TemplateSyntaxError(TemplateError, ValidationError):
    code = "TEMPLATE_SYNTAX"


class WorkflowStepError(ValidationError):
    """A workflow step is invalid: ``step`` is its name, ``field`` the path of the bad field
    (``steps[2].then[0].if``)."""

    code = "WORKFLOW_STEP"

    def __init__(self, message: str, *, field: str | None = None, step: str | None = None) -> None:
        super().__init__(message, field=field)
        self.step = step


class TemplateRenderError(TemplateError):
    code = "TEMPLATE_RENDER"


class NotFoundError(HeraldError):
    code = "NOT_FOUND"


class ConflictError(HeraldError):
    code = "CONFLICT"


class RateLimitedError(HeraldError):
    """The caller went over a rate limit; ``retry_after_seconds`` says when to try again."""

    code = "RATE_LIMITED"

    def __init__(
        self, message: str, *, retry_after_seconds: float, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after_seconds = retry_after_seconds


class UnavailableError(HeraldError):
    code = "UNAVAILABLE"


class UserDirectoryUnavailable(UnavailableError):
    """The auth service could not answer a profile look-up: down, slow, or misconfigured."""
