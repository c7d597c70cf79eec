"""Request and response shapes shared by the resources: config fields, names, metadata."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from services.api import keyed_fields as keyed
from services.api.base_types import Description as Description  # re-exported
from services.api.base_types import StrictModel, text
from services.api.slugs import RESERVED_VARIANT_SLUGS, slugify
from services.shared.agent_config import (
    CONFIG_FIELDS,
    DEFAULTS,
    INTEGER_FIELDS,
    NUMBER_FIELDS,
    STRING_FIELDS,
)
from services.shared.identifiers import ID_PATTERNS, PREFIXES, SLUG_MAX_LENGTH, is_id

Name = text(1, 256)
Slug = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=SLUG_MAX_LENGTH, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$"),
]


def derivable_slug(slug: str | None, info: ValidationInfo, *, name_field: str) -> str | None:
    """Without an explicit slug, the name must give one (a name like "!!!" gives "").

    A field validator on `slug` (declared after the name, with validate_default), so this
    error is reported together with every other bad field.
    """
    name = info.data.get(name_field)
    if slug is None and isinstance(name, str) and not slugify(name):
        raise PydanticCustomError(
            "slug_required", "required: the {name_field} gives an empty slug", {"name_field": name_field}
        )
    return slug


def not_reserved(slug: str | None) -> str | None:
    """`base` names the agent's own config where a variant is expected, `live` an experiment
    arm that serves the variant active at its start."""
    if slug in RESERVED_VARIANT_SLUGS:
        raise PydanticCustomError(
            "slug_reserved", "'{slug}' is reserved ('base' and 'live' name configs, not variants)", {"slug": slug}
        )
    return slug


def id_pattern(kind: str) -> WithJsonSchema:
    """The JSON Schema of a string that must be a `kind` id (its validator checks it)."""
    return WithJsonSchema({"type": "string", "pattern": ID_PATTERNS[kind]})


def cursor(kind: str) -> Any:
    """The `after` query parameter of a list of `kind`: a well-formed id, or absent (with
    `id_pattern(kind)`, the document states the id's pattern)."""

    def check(value: str | None) -> str | None:
        if value is not None and not is_id(kind, value):
            noun = kind.replace("_", " ")
            article = "an" if noun[0] in "aeiou" else "a"
            raise PydanticCustomError(
                "invalid_cursor",
                "must be the id of {article} {noun} ({prefix}_ and a ULID)",
                {"article": article, "noun": noun, "prefix": PREFIXES[kind]},
            )
        return value

    return AfterValidator(check)


MetadataKey = text(1, 64)
MetadataValue = text(0, 512)
METADATA_MAX_PAIRS = 16
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=METADATA_MAX_PAIRS)]  # type: ignore[valid-type]
# In a merge patch a null value removes the key; the 16-pair cap is checked after merging.
MetadataPatch = dict[MetadataKey, MetadataValue | None]  # type: ignore[valid-type]


def _whole(value: Any) -> Any:
    """JSON has one number type: `48.0` is the integer 48 (JSON Schema's `integer` holds it,
    and clients that write every number with a point send it). `48.5` is not an integer."""
    if isinstance(value, float) and math.isfinite(value):
        if not value.is_integer():
            raise PydanticCustomError("int_from_float", "Input should be a whole number, not {value}", {"value": value})
        return int(value)
    return value


def integer(low: int, high: int) -> Any:
    """A JSON integer from low to high: `48` or `48.0`, never `true`, `"48"` or `48.5`."""
    return Annotated[int, Strict(), Field(ge=low, le=high), BeforeValidator(_whole)]


def number(low: float, high: float) -> Any:
    """A finite JSON number from low to high: never `true` or `"0.5"`."""
    return Annotated[float, Strict(), Field(ge=low, le=high, allow_inf_nan=False)]


def _field_type(name: str) -> Any:
    if name in STRING_FIELDS:
        return text(*STRING_FIELDS[name])
    if name in NUMBER_FIELDS:
        return number(*NUMBER_FIELDS[name])
    return integer(*INTEGER_FIELDS[name])


CONFIG_TYPES: dict[str, Any] = {name: _field_type(name) for name in CONFIG_FIELDS}
# In responses, plain types: what is stored is shown as it is. The limits are the requests'
# (and the database's CHECKs); a read never re-checks them, so tightening one later cannot
# make old rows unreadable, and a 200,000-character prompt is not scanned on every read.
CONFIG_READ_TYPES: dict[str, Any] = {
    name: str if name in STRING_FIELDS else float if name in NUMBER_FIELDS else int for name in CONFIG_FIELDS
}


# What each config field is for. The service stores the values and checks their ranges and
# the one cross-field rule; the agent that resolves its config applies them.
CONFIG_MEANINGS: dict[str, str] = {
    "model_provider": "Who serves the model, as the agent names it (`openai`, `anthropic`, `vllm`, ...).",
    "model_name": "The model's name at its provider (`gpt-4o-mini`, `claude-sonnet-4-5`, ...).",
    "system_prompt": "The system prompt the agent sends at the start of every conversation.",
    "user_prompt_template": "The template the agent fills in to make each user message (its placeholders are the "
    "agent's own, such as `{question}`); empty: the agent sends its input as it is.",
    "prompt_version": "A label of your choosing for this version of the prompts (`v7`, `2026-11-22`), "
    "for the agent's logs and traces; the service only stores it.",
    "temperature": "Sampling temperature: 0 is the most deterministic, higher values vary more.",
    "max_tokens": "The most tokens the model may generate in one response.",
    "context_window": "The model's context window in tokens (input and output together); 0 = unspecified. "
    "When above 0, `input_token_limit + max_tokens` must fit in it (else 422 `inconsistent_config`).",
    "input_token_limit": "The most tokens the agent may send as input in one model call; 0 = no limit.",
    "token_budget": "The most tokens (input and output) the agent may spend on one task, over all its model "
    "calls; 0 = no budget.",
    "timeout_seconds": "How long the agent waits for one model call before giving it up, in seconds.",
    "max_retries": "How many times the agent retries a failed model call; 0 = never.",
}


def _range(name: str) -> str:
    """The field's allowed values, from the same limits the requests are checked against."""
    if name in STRING_FIELDS:
        low, high = STRING_FIELDS[name]
        return f"{low:,} to {high:,} characters." if low else f"Up to {high:,} characters."
    if name in NUMBER_FIELDS:
        low_number, high_number = NUMBER_FIELDS[name]
        return f"From {low_number} to {high_number}, finite."
    low, high = INTEGER_FIELDS[name]
    return f"Integer, {low:,} to {high:,}."


def config_description(name: str, note: str = "") -> str:
    """A config field's description: what it is for, its range, and what the schema adds."""
    return " ".join(part for part in (CONFIG_MEANINGS[name], _range(name), note) if part)


def default_note(name: str) -> str:
    """On an agent's create: required, or the default an omitted or null field takes."""
    default = DEFAULTS[name]
    return "Required." if default is None else f"Default when omitted or null: `{json.dumps(default)}`."


def _keyed_schemas() -> tuple[dict[str, Any], ...]:
    """The keyed fields' (contract 1.1) entries of the config models below: on an agent's
    create, in a variant's overrides (create and merge patch), and in responses."""
    described = {
        "params": keyed.PARAMS_DESCRIPTION,
        "tools": keyed.TOOLS_DESCRIPTION,
        "variables": keyed.VARIABLES_DESCRIPTION,
    }
    create = {
        "params": (keyed.Params | None, Field(None, description=described["params"] + " Default: none.")),
        "tools": (keyed.Tools | None, Field(None, description=described["tools"] + " Default: none.")),
        "variables": (
            keyed.Variables | None,
            Field(
                None,
                description=described["variables"] + " Omitted: inferred from the templates, each placeholder a "
                "required string.",
            ),
        ),
    }
    entry = " A key set to null removes the variant's entry (the base's applies again); null removes them all."
    overrides = {
        "params": (keyed.ParamsPatch | None, Field(None, description=described["params"] + entry)),
        "params_unset": (
            keyed.ParamsUnset | None,
            Field(None, description="Base params this variant drops (a reasoning model refuses `top_p`)."),
        ),
        "tools": (
            keyed.ToolOverrides | None,
            Field(None, description=described["tools"] + ' `{"disabled": true}` drops the base\'s tool.' + entry),
        ),
        "variables": (keyed.VariablesPatch | None, Field(None, description=described["variables"] + entry)),
    }
    read = {
        "params": (dict[str, Any], Field(description=described["params"])),
        "tools": (dict[str, dict[str, Any]], Field(description=described["tools"])),
        "variables": (dict[str, dict[str, Any]], Field(description=described["variables"])),
    }
    absent = " Absent when the variant sets none."
    overrides_read = {
        "params": (dict[str, Any], Field(None, description=described["params"] + absent)),
        "params_unset": (list[str], Field(None, description="Base params this variant drops." + absent)),
        "tools": (dict[str, dict[str, Any]], Field(None, description=described["tools"] + absent)),
        "variables": (dict[str, dict[str, Any]], Field(None, description=described["variables"] + absent)),
    }
    return create, overrides, read, overrides_read


KEYED_CREATE, KEYED_OVERRIDES, KEYED_READ, KEYED_OVERRIDES_READ = _keyed_schemas()

# On create: model_provider and model_name required, the rest default (null = default).
AgentConfigCreate = create_model(  # type: ignore[call-overload]
    "AgentConfigCreate",
    __base__=StrictModel,
    __doc__="An agent's base config on create; omitted or null fields take their default.",
    **{
        name: (
            (CONFIG_TYPES[name], Field(description=config_description(name, default_note(name))))
            if name in ("model_provider", "model_name")
            else (CONFIG_TYPES[name] | None, Field(None, description=config_description(name, default_note(name))))
        )
        for name in CONFIG_FIELDS
    },
    **KEYED_CREATE,
)

# Sparse: any subset. In a variant, null means "inherit" (removes the override).
ConfigOverrides = create_model(  # type: ignore[call-overload]
    "ConfigOverrides",
    __base__=StrictModel,
    __doc__="Any subset of the twelve fields; null removes an override (inherit again).",
    **{
        name: (
            CONFIG_TYPES[name] | None,
            Field(
                None,
                description=config_description(
                    name, "Null removes the override: the agent's value is inherited again."
                ),
            ),
        )
        for name in CONFIG_FIELDS
    },
    **KEYED_OVERRIDES,
)


# In responses: all twelve, as stored.
AgentConfigRead = create_model(  # type: ignore[call-overload]
    "AgentConfigRead",
    __doc__="The agent's base config: all twelve fields.",
    **{name: (CONFIG_READ_TYPES[name], Field(description=config_description(name))) for name in CONFIG_FIELDS},
    **KEYED_READ,
)

# In responses: only the fields a variant sets are present, and none is ever null.
ConfigOverridesRead = create_model(  # type: ignore[call-overload]
    "ConfigOverridesRead",
    __doc__="The fields a variant overrides (the others are inherited from the agent).",
    **{
        name: (
            CONFIG_READ_TYPES[name],
            Field(None, description=config_description(name, "Absent when the variant inherits the agent's.")),
        )
        for name in CONFIG_FIELDS
    },
    **KEYED_OVERRIDES_READ,
)


def set_fields(model: BaseModel) -> dict[str, Any]:
    """The fields a request actually sent, nulls included (merge-patch semantics)."""
    return {name: getattr(model, name) for name in model.model_fields_set}


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with microseconds: `2026-11-22T10:00:00.123456Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def list_page(items: list[dict[str, Any]], *, limit: int) -> dict[str, Any]:
    """The contract's list envelope from up to `limit + 1` rows, newest first."""
    has_more = len(items) > limit
    items = items[:limit]
    first_id, last_id = (items[0]["id"], items[-1]["id"]) if items else (None, None)
    page = Page[dict[str, Any]](object="list", data=items, first_id=first_id, last_id=last_id, has_more=has_more)
    return page.model_dump(mode="json")


# Ids the OpenAPI examples share, so that an agent, its variant, experiment, revision and
# key tie together across the examples of every object.
EXAMPLE_IDS = {
    "agent": "agt_01JDQ3V0Y8K2M4N6P8R0S2T4V6",
    "variant": "var_01JDQ3W5A7C9E1G3J5K7M9P1R3",
    "other_variant": "var_01JDQ3W2Z4B6D8F0H2K4N6Q8S0",
    "experiment": "exp_01JDQ40B2D4F6H8K0M2P4R6T8V",
    "revision": "rev_01JDQ41C3E5G7J9M1P3S5V7X9Z",
    "earlier_revision": "rev_01JDQ3W5A9C1E3G5J7K9M1P3R5",
    "api_key": "key_01JDQ3T2X4Z6B8D0F2H4K6M8P0",
    "environment": "env_01JDQ3S1W3Y5A7C9E1G3J5K7M9",
}
EXAMPLE_TIMES = ("2026-11-22T10:00:00.123456Z", "2026-11-22T10:04:31.008812Z", "2026-11-22T10:05:12.402117Z")
EXAMPLE_CONFIG: dict[str, Any] = {
    "model_provider": "openai",
    "model_name": "gpt-4o-mini",
    "system_prompt": "You are Acme's support assistant. Answer from the help center; say when you do not know.",
    "user_prompt_template": "Customer question: {{question}}",
    "prompt_version": "v7",
    "temperature": 0.7,
    "max_tokens": 1024,
    "context_window": 128000,
    "input_token_limit": 8000,
    "token_budget": 50000,
    "timeout_seconds": 30,
    "max_retries": 2,
    "params": {"top_p": 0.9, "seed": 7},
    "tools": {
        "search_help_center": {
            "description": "Search the help center's articles.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        }
    },
    "variables": {"question": {"type": "string", "description": "The customer's message."}},
}

T = TypeVar("T")


def _page_examples(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """A page's example: one item, from the item model's own first example."""
    (item,) = get_args(cls.model_fields["data"].annotation) or (None,)
    extra = getattr(item, "model_config", {}).get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if examples:
        first = examples[0]
        page = {"object": "list", "data": [first], "first_id": first["id"], "last_id": first["id"], "has_more": False}
        schema["examples"] = [page]


class Page(BaseModel, Generic[T]):
    """A page of a list, newest first."""

    model_config = ConfigDict(json_schema_extra=_page_examples)

    object: Literal["list"] = Field(description="Always `list`.")
    data: list[T] = Field(description="The items, newest first: at most `limit`.")
    first_id: str | None = Field(description="The id of the first item; null on an empty page.")
    last_id: str | None = Field(
        description="The id of the last item: pass it as `after` for the next page. Null on an empty page."
    )
    has_more: bool = Field(description="Whether items follow this page.")
