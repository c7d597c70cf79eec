"""Domain errors. They say what went wrong; `errors.py` decides how HTTP shows it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One bad field: `param` is its path in the request (`config.temperature`)."""

    param: str
    message: str


class DomainError(Exception):
    """Base of every error the API reports on purpose. `code` is the contract's code."""

    code: str = "error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class NotFound(DomainError):
    """A resource named by the path, or by a body field (then `param` names it)."""

    code = "resource_missing"

    def __init__(self, kind: str, ref: str, *, param: str | None = None, detail: str | None = None) -> None:
        detail = detail or f"{kind} '{ref}' not found"
        super().__init__(detail, errors=[FieldError(param, detail)] if param else None)
        self.param = param


class ValidationFailed(DomainError):
    code = "validation_error"


class UnknownParameter(DomainError):
    """A query parameter the route does not take (a misspelt `after` would page from the start)."""

    code = "unknown_parameter"


class InconsistentConfig(DomainError):
    code = "inconsistent_config"


class InvalidTemplate(DomainError):
    """A prompt template with a `{{` that opens no valid placeholder (contract 1.1)."""

    code = "invalid_template"


class UndeclaredVariable(DomainError):
    """A servable template uses a `{{name}}` that no variable declares (contract 1.1)."""

    code = "undeclared_variable"


class InvalidSchema(DomainError):
    """A tool's `parameters` or an agent's `params_schema` is not a valid JSON Schema."""

    code = "invalid_schema"


class MissingVariable(DomainError):
    """A render lacks a required variable that has no default."""

    code = "missing_variable"


class UnknownVariable(DomainError):
    """A render gives a variable the config does not declare."""

    code = "unknown_variable"


class ModelLimit(DomainError):
    """A config over its catalogued model's limit: `max_tokens` above its
    `max_output_tokens` (contract 1.1, "Models")."""

    code = "model_limit"


class SlugTaken(DomainError):
    code = "slug_taken"


class KeyNameTaken(DomainError):
    """API key names are unique forever: a revoked key keeps its name."""

    code = "key_name_taken"


class LastAdminKey(DomainError):
    """Revoking the last live (neither revoked nor expired) admin key: nobody could manage keys."""

    code = "last_admin_key"


class VariantActive(DomainError):
    code = "variant_active"


class ExperimentNotDraft(DomainError):
    """Arms and salt change, and an experiment is deleted, only while it is a draft."""

    code = "experiment_not_draft"


class ExperimentRunning(DomainError):
    """Another experiment of the agent runs (or, deleting an agent, one of its own)."""

    code = "experiment_running"


class KeyTakenOver(DomainError):
    """An idempotent request whose key a retry took over (its lease ran out): it must not act."""

    code = "idempotency_key_in_use"


class InsufficientScope(DomainError):
    """The key's scope allows the route but not this use of it (a purge needs `admin`)."""

    code = "insufficient_scope"


class EnvironmentForbidden(DomainError):
    """A key bound to an environment naming another, or changing a shared definition that
    another environment serves now (contract 1.1, "Environments")."""

    code = "environment_forbidden"


class AgentNotArchived(DomainError):
    """Purging an agent that is not archived."""

    code = "agent_not_archived"


class EnvironmentProtected(DomainError):
    """Deleting `production`, which every installation has."""

    code = "environment_protected"


class EnvironmentInUse(DomainError):
    """Deleting an environment in which something is active, ruled or running, or to which a
    live API key is bound."""

    code = "environment_in_use"


class EnvironmentLimitReached(DomainError):
    """Creating an environment when the installation has the most it may have (100)."""

    code = "environment_limit_reached"


class DuplicateArm(DomainError):
    """At start, a `live` arm resolves to the same config source as another arm."""

    code = "duplicate_arm"


class InvalidStatus(DomainError):
    """Starting a stopped experiment, stopping a draft."""

    code = "invalid_status"


class VariantInExperiment(DomainError):
    """A variant an arm of a draft or running experiment names cannot be deleted."""

    code = "variant_in_experiment"


class VariantInRule(DomainError):
    """A variant a targeting rule serves (in any environment) cannot be deleted."""

    code = "variant_in_rule"


class PreconditionFailed(DomainError):
    code = "precondition_failed"


class NothingToUndo(DomainError):
    code = "nothing_to_undo"


class UndoConflict(DomainError):
    code = "undo_conflict"


class RevisionNotRestorable(DomainError):
    """The variant did not exist right after that revision (it was its deletion)."""

    code = "revision_not_restorable"


class ServiceBusy(DomainError):
    """The database kept refusing a transaction for serialization; the client may retry."""

    code = "service_unavailable"

    def __init__(self, detail: str = "The service is busy; retry the request shortly") -> None:
        super().__init__(detail)


class NotReady(DomainError):
    code = "not_ready"


@contextmanager
def conflicts_reported_as(kind: type[DomainError] | None) -> Iterator[None]:
    """Re-raise a broken rule or a taken slug as `kind` (an undo reports them as
    `undo_conflict`); with None, let them through as they are."""
    try:
        yield
    except (
        InconsistentConfig,
        ModelLimit,
        InvalidTemplate,
        UndeclaredVariable,
        InvalidSchema,
        SlugTaken,
        VariantInExperiment,
        VariantInRule,
        ExperimentRunning,
    ) as error:
        if kind is None:
            raise
        raise kind(error.detail, errors=error.errors) from None
