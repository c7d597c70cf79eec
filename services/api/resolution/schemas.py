"""The resolved config as the HTTP API shows it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, Strict

from services.api.errors import validation_detail
from services.api.exceptions import FieldError, ValidationFailed
from services.api.keyed_fields import storable_json
from services.api.schemas import EXAMPLE_CONFIG, EXAMPLE_IDS, StrictModel, config_description
from services.shared.agent_config import (
    CONFIG_FIELDS,
    INTEGER_FIELDS,
    KEYED_FIELDS,
    NUMBER_FIELDS,
    ResolvedAgentConfig,
)
from services.shared.rules import (
    ATTRIBUTE_MAX_LENGTH,
    ATTRIBUTE_PATTERN,
    MAX_ATTRIBUTES,
    VALUE_MAX_LENGTH,
    attribute_errors,
)

# The active variant's value where it sets one, else the agent's.
RESOLVED = "Resolved: the variant's value where it sets one, else the agent's."
EXAMPLE_OVERRIDES = {"temperature": 0.2, "max_tokens": 300}
RESOLVED_EXAMPLE: dict[str, Any] = {
    "object": "resolved_agent_config",
    "agent_id": EXAMPLE_IDS["agent"],
    "agent_slug": "support-bot",
    "variant_id": EXAMPLE_IDS["variant"],
    "variant_slug": "concise",
    "source": "variant",
    "experiment_id": None,
    "arm": None,
    "environment": "production",
    "rule_id": None,
    **EXAMPLE_CONFIG,
    **EXAMPLE_OVERRIDES,
}


def _provenance(source: str, overridden: dict[str, Any]) -> dict[str, str]:
    names = [*CONFIG_FIELDS, *(f"{kind}.{key}" for kind in KEYED_FIELDS for key in EXAMPLE_CONFIG[kind])]
    return {name: (source if name in overridden else "agent") for name in names}


class ResolvedRead(BaseModel):
    """The config an agent runs with: a variant's overrides over the agent's base config."""

    model_config = ConfigDict(json_schema_extra={"examples": [RESOLVED_EXAMPLE]})

    object: Literal["resolved_agent_config"] = Field(description="Always `resolved_agent_config`.")
    agent_id: str = Field(description="The agent.")
    agent_slug: str = Field(description="The agent's slug.")
    variant_id: str | None = Field(description="The variant whose overrides apply; null: the base config alone.")
    variant_slug: str | None = Field(description="That variant's slug, or null.")
    source: Literal["agent", "variant", "preview", "experiment", "rule", "rollout"] = Field(
        description="Where the values come from: `agent` (no active variant), `variant` (the active one), "
        "`preview` (`?variant=`), `experiment` (the subject's arm of the running experiment), `rule` (the "
        "first targeting rule that holds: `rule_id`), `rollout` (the subject's arm of a rollout)."
    )
    experiment_id: str | None = Field(description="The running experiment that chose the arm, or null.")
    arm: int | None = Field(description="The subject's arm in that experiment, or null.")
    environment: str = Field(description="The environment it was resolved in (its slug).")
    rule_id: str | None = Field(description="The targeting rule that served it, or null.")
    model_provider: str = Field(description=config_description("model_provider", RESOLVED))
    model_name: str = Field(description=config_description("model_name", RESOLVED))
    system_prompt: str = Field(description=config_description("system_prompt", RESOLVED))
    user_prompt_template: str = Field(description=config_description("user_prompt_template", RESOLVED))
    prompt_version: str = Field(description=config_description("prompt_version", RESOLVED))
    temperature: float = Field(description=config_description("temperature", RESOLVED))
    max_tokens: int = Field(description=config_description("max_tokens", RESOLVED))
    context_window: int = Field(description=config_description("context_window", RESOLVED))
    input_token_limit: int = Field(description=config_description("input_token_limit", RESOLVED))
    token_budget: int = Field(description=config_description("token_budget", RESOLVED))
    timeout_seconds: int = Field(description=config_description("timeout_seconds", RESOLVED))
    max_retries: int = Field(description=config_description("max_retries", RESOLVED))
    params: dict[str, Any] = Field(
        description="Further model parameters, passed to the model as they are: the agent's, each replaced by the "
        "variant's entry of that key, without those the variant unsets (`params_unset`)."
    )
    tools: dict[str, dict[str, Any]] = Field(
        description='Tool definitions by name (`{"description", "parameters", "strict"?}`): the agent\'s, each '
        "replaced by the variant's of that name, without those the variant disables."
    )
    variables: dict[str, dict[str, Any]] = Field(
        description='The template variables the prompts use (`{"type", "required"?, "default"?, '
        "\"description\"?}` by name): the agent's, each replaced by the variant's of that name. Render with "
        "`POST .../render` or the SDK's `config.render(**variables)`."
    )
    provenance: dict[str, Literal["agent", "variant", "experiment"]] | None = Field(
        None,
        description="Only with `?explain=true` (and in bundles): where each value came from (`experiment` when an "
        "experiment's arm chose the variant): the twelve fields by name, then each param, tool and variable as "
        "`params.<key>`, `tools.<name>`, `variables.<name>`.",
    )


class BundleArm(BaseModel):
    """One arm of the running experiment, resolved."""

    arm: int = Field(description="The arm's number; 0 is the control.")
    weight: int = Field(description="Its weight: arms own consecutive ranges of the 10,000 buckets by weight.")
    variant_id: str | None = Field(description="The variant it serves; null: the agent's base config.")
    resolved: ResolvedRead = Field(description="What a subject in this arm resolves to.")


class BundleRule(BaseModel):
    """A targeting rule of the environment, with the config it serves."""

    id: str = Field(description="`rul_` and a ULID.")
    name: str = Field(description="Its name, unique in the set.")
    when: list[dict[str, Any]] = Field(description="Its conditions, all of which must hold.")
    serve: dict[str, str] = Field(description='`{"variant": "base" | <variant id>}`.')
    resolved: ResolvedRead = Field(description="What a context this rule matches resolves to.")


class BundleExperiment(BaseModel):
    """The running experiment: enough to assign any subject to its arm locally."""

    id: str = Field(description="The experiment.")
    kind: Literal["experiment", "rollout"] = Field(description="`experiment` (weights) or `rollout` (steps).")
    status: Literal["running", "paused"] = Field(description="A running split, or a paused rollout.")
    salt: str = Field(
        description='Its salt: a subject\'s bucket is the first 8 bytes of `sha256(f"{salt}:{subject}")`, '
        "big-endian, modulo 10,000."
    )
    arms: list[BundleArm] = Field(description="Every arm, in order.")


BUNDLE_EXAMPLE: dict[str, Any] = {
    "object": "resolution_bundle",
    "agent_id": EXAMPLE_IDS["agent"],
    "agent_slug": "support-bot",
    "environment": "production",
    "etag": "5d0c2f9b81a4e6c37f12ab90",
    "resolved": {**RESOLVED_EXAMPLE, "provenance": _provenance("variant", EXAMPLE_OVERRIDES)},
    "rules": [],
    "experiment": {
        "id": EXAMPLE_IDS["experiment"],
        "kind": "experiment",
        "status": "running",
        "salt": EXAMPLE_IDS["experiment"],
        "arms": [
            {
                "arm": 0,
                "weight": 1,
                "variant_id": None,
                "resolved": {
                    **RESOLVED_EXAMPLE,
                    **EXAMPLE_CONFIG,
                    "variant_id": None,
                    "variant_slug": None,
                    "source": "experiment",
                    "experiment_id": EXAMPLE_IDS["experiment"],
                    "arm": 0,
                    "provenance": _provenance("experiment", {}),
                },
            },
            {
                "arm": 1,
                "weight": 1,
                "variant_id": EXAMPLE_IDS["variant"],
                "resolved": {
                    **RESOLVED_EXAMPLE,
                    "source": "experiment",
                    "experiment_id": EXAMPLE_IDS["experiment"],
                    "arm": 1,
                    "provenance": _provenance("experiment", EXAMPLE_OVERRIDES),
                },
            },
        ],
    },
}


class BundleRead(BaseModel):
    """What a client needs to resolve any subject itself: the plain resolution and, while
    an experiment runs, every arm's (with `provenance`). `etag` is a hash of the content."""

    model_config = ConfigDict(json_schema_extra={"examples": [BUNDLE_EXAMPLE]})

    object: Literal["resolution_bundle"] = Field(description="Always `resolution_bundle`.")
    agent_id: str = Field(description="The agent.")
    agent_slug: str = Field(description="The agent's slug.")
    environment: str = Field(description="The environment it resolves in (its slug).")
    etag: str = Field(
        description="A hash of the bundle's content, the same on every replica; the `ETag` header is this in "
        "quotes, and the watch stream's event id."
    )
    resolved: ResolvedRead = Field(
        description="What resolves when no rule matches and no split applies: the active variant, else the base "
        "config (with `provenance`)."
    )
    rules: list[BundleRule] = Field(description="The environment's targeting rules, in order; the first match wins.")
    experiment: BundleExperiment | None = Field(description="The running experiment, or null.")


def to_body(resolved: ResolvedAgentConfig, *, explain: bool) -> dict[str, Any]:
    """The resolved config as the API shows it: a `ResolvedRead` (the one shape the routes
    return and OpenAPI shows) as JSON-ready values, in its fields' order; `provenance` only
    when `explain`. Built directly, not by validating a `ResolvedRead`: that cost a
    resolution miss about 10 us, to check values we made ourselves (numbers are coerced as
    it would: a whole temperature is a float). tests/api/test_resolution_body.py holds it
    equal to `ResolvedRead(...).model_dump(exclude_unset=True)`."""
    body: dict[str, Any] = {
        "object": "resolved_agent_config",
        "agent_id": resolved.agent_id,
        "agent_slug": resolved.agent_slug,
        "variant_id": resolved.variant_id,
        "variant_slug": resolved.variant_slug,
        "source": resolved.source,
        "experiment_id": resolved.experiment_id,
        "arm": resolved.arm,
        "environment": resolved.environment,
        "rule_id": resolved.rule_id,
    }
    for name in CONFIG_FIELDS:
        value = getattr(resolved, name)
        body[name] = float(value) if name in NUMBER_FIELDS else int(value) if name in INTEGER_FIELDS else value
    for name in KEYED_FIELDS:
        body[name] = dict(getattr(resolved, name))
    if explain:
        body["provenance"] = resolved.provenance
    return body


# A request's context (contract 1.1, "Targeting rules and context"). The limits and their
# check are the SDK's (`agent_variants.rules`), so a client refuses what the service would.
# Strict: `true` stays a boolean and `"40"` a string, as the rules compare them.
ContextValue = (
    Annotated[bool, Strict()]
    | Annotated[int, Strict()]
    | Annotated[float, Strict(), Field(allow_inf_nan=False)]
    | Annotated[str, Strict(), Field(max_length=VALUE_MAX_LENGTH)]
)
ContextName = Annotated[str, Field(min_length=1, max_length=ATTRIBUTE_MAX_LENGTH, pattern=ATTRIBUTE_PATTERN)]


def check_attributes(attributes: Mapping[str, Any], *, param: str) -> None:
    """422 naming every bad attribute (`{param}<name>`, `param` like `attr.`), as
    `attribute_errors` finds them: a name that is not 1-64 characters of `A-Z a-z 0-9 _ .
    -`, the name `subject`, a value that is not a string up to 1,024 characters, a finite
    number or a boolean, more than 50 attributes."""
    errors = [
        FieldError(
            param + found["param"].removeprefix("attributes.") if "." in found["param"] else param.rstrip("."),
            found["message"],
        )
        for found in attribute_errors(attributes)
    ]
    if errors:
        raise ValidationFailed(validation_detail(errors), errors=errors)


def _names_by_pattern(schema: dict[str, Any], _model: type | None = None) -> None:
    """Pydantic states a dict's key pattern as `patternProperties`, which lets any other key
    through with any value; the API refuses those, so the document says so: every key
    matches (`propertyNames`), every value is a context value (`additionalProperties`)."""
    attributes = schema.get("properties", {}).get("attributes", {})  # (an empty schema: its examples only)
    for option in attributes.get("anyOf", ()):
        if "patternProperties" in option:
            ((pattern, values),) = option.pop("patternProperties").items()
            option["propertyNames"]["pattern"] = pattern
            option["additionalProperties"] = values
    schema["examples"] = [{"subject": "user-42", "attributes": {"plan": "pro", "seats": 40, "beta": True}}]


class ResolveRequest(StrictModel):
    """A context to resolve (`POST .../resolve`)."""

    model_config = ConfigDict(json_schema_extra=_names_by_pattern)

    environment: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="The environment, by slug or id; omitted: the request's (`?environment=`, the key's, else "
        "`production`).",
    )
    subject: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="Who asks: the attribute `subject` of rules, and what a split assigns to an arm."
    )
    attributes: Annotated[dict[ContextName, ContextValue], Field(max_length=MAX_ATTRIBUTES)] | None = Field(
        None,
        description="Up to 50 attributes, each a string (up to 1,024 characters), a number or a boolean; names are "
        "1-64 characters of `A-Z a-z 0-9 _ . -`, and `subject` is not one.",
    )


def _render_examples(schema: dict[str, Any], _model: type | None = None) -> None:
    _names_by_pattern(schema, _model)
    # A preview renders one variant for everyone: `variant` goes with neither context field.
    schema["not"] = {"anyOf": [{"required": ["variant", "subject"]}, {"required": ["variant", "attributes"]}]}
    schema["examples"] = [
        {"variables": {"question": "Where is my invoice?"}, "subject": "user-42", "attributes": {"plan": "pro"}}
    ]


class RenderRequest(ResolveRequest):
    """Variables to render the prompts of a resolved config with (`POST .../render`)."""

    model_config = ConfigDict(json_schema_extra=_render_examples)

    variables: Annotated[dict[Annotated[str, Field(max_length=256)], JsonValue], AfterValidator(storable_json)] = Field(
        default_factory=dict,
        max_length=1024,
        description="A value for each variable the templates use: required ones must be given (else "
        "`missing_variable`), undeclared ones are refused (`unknown_variable`), values must have the declared type "
        "(`validation_error`); defaults fill optional ones.",
    )
    variant: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="Render a preview of this variant (id or slug, or `base`) instead of what the context gets; not "
        "with `subject` or `attributes`.",
    )


class RenderedRead(BaseModel):
    """A resolved config's prompts rendered with the variables given."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "rendered_prompt",
                    "config": RESOLVED_EXAMPLE,
                    "system": EXAMPLE_CONFIG["system_prompt"],
                    "user": "Customer question: Where is my invoice?",
                }
            ]
        }
    )

    object: Literal["rendered_prompt"] = Field(description="Always `rendered_prompt`.")
    config: ResolvedRead = Field(description="The resolved config the prompts come from.")
    system: str = Field(description="`system_prompt` rendered.")
    user: str = Field(description="`user_prompt_template` rendered.")
