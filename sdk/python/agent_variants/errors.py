"""Typed errors from the service's problem+json answers. Each keeps the whole document."""

from __future__ import annotations

import datetime
import email.utils
from typing import Any


class AgentVariantsError(Exception):
    """Base of every error the SDK raises. `problem` is the service's problem+json body."""

    def __init__(self, message: str, *, status: int | None = None, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem or {}
        self.code: str | None = self.problem.get("code")


class NotFound(AgentVariantsError):
    pass


class Conflict(AgentVariantsError):
    pass


class ValidationFailed(AgentVariantsError):
    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.problem.get("errors") or [])


class PreconditionFailed(AgentVariantsError):
    pass


class Unauthorized(AgentVariantsError):
    pass


class Forbidden(AgentVariantsError):
    pass


class RateLimited(AgentVariantsError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Unavailable(AgentVariantsError):
    """The service cannot be reached (or answered 503), and nothing fresh enough is held."""


_BY_STATUS: dict[int, type[AgentVariantsError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def from_response(status: int, body: Any, headers: Any) -> AgentVariantsError:
    """The error for a 4xx/5xx answer."""
    problem = body if isinstance(body, dict) else {}
    message = str(problem.get("detail") or f"HTTP {status}")
    kind = _BY_STATUS.get(status, Unavailable if status >= 500 else AgentVariantsError)
    if kind is RateLimited:
        retry = seconds_until(headers.get("retry-after"))
        return RateLimited(message, retry_after=retry, status=status, problem=problem)
    return kind(message, status=status, problem=problem)


def seconds_until(value: str | None) -> float | None:
    """A `Retry-After` value in seconds: a number, or an HTTP date (RFC 9110); None if unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


class RenderFailed(ValidationFailed):
    """`config.render()` refused the variables (or the config's templates), as the service's
    `POST .../render` refuses them: `.code` is `missing_variable`, `unknown_variable` or
    `validation_error` (or, for a config the service would not serve, `invalid_template`
    or `undeclared_variable`), `.errors` names each one (`variables.<name>`, or the
    template's field), and `.status` is 422, as the service answers. Catching
    `ValidationFailed` handles a local render and a remote one alike."""


class IncompatibleConfig(AgentVariantsError, ValueError):
    """The resolved config cannot be written as this provider's request (a temperature
    past its range, a param naming a key the config's own fields set). `.errors` names
    each problem (`param` and `message`), as `ValidationFailed` does."""

    def __init__(self, provider: str, errors: list[dict[str, str]]) -> None:
        message = f"the config does not fit {provider}'s request: " + "; ".join(
            f"{error['param']}: {error['message']}" for error in errors
        )
        super().__init__(message, problem={"code": "incompatible_config", "detail": message, "errors": errors})
        self.provider = provider

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.problem.get("errors") or [])
