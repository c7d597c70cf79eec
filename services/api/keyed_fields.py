"""Contract 1.1's keyed config fields in requests: `params`, `tools`, `variables` (and a
variant's `params_unset`), their shapes and limits, and how a merge patch applies to them.

Each is a JSON object resolved by top-level key (`agent_variants.config.coalesce_keyed`).
Validated values are plain JSON (dicts, lists, strings ...), never models, so they are
stored, compared and merged as they are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, JsonValue, Strict, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from services.api.base_types import Description, StrictModel, text
from services.shared.agent_config import (
    DISABLED_TOOL,
    KEYED_FIELDS,
    PARAMS_MAX_BYTES,
    PARAMS_MAX_KEYS,
    TOOL_NAME_PATTERN,
    TOOLS_MAX,
)
from services.shared.templates import VARIABLE_NAME, VARIABLE_TYPES, type_error

VARIABLES_MAX = 128


def storable_json(value: Any) -> Any:
    """PostgreSQL's jsonb holds no NUL (`\\u0000`) in a string or key, nor lone surrogates,
    nor `NaN` or an infinity (Python's json reads them; they are no JSON numbers)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        else:
            strings = []
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, float) and not math.isfinite(item):
                raise PydanticCustomError("json_finite", "numbers must be finite (no NaN or Infinity)")
        for string in strings:
            if "\x00" in string:
                raise PydanticCustomError("json_nul", "must not contain NUL (\\u0000) characters")
            try:
                string.encode("utf-8")
            except UnicodeEncodeError:
                raise PydanticCustomError("json_surrogate", "must be valid Unicode (no lone surrogates)") from None
    return value


def params_size_error(params: Mapping[str, Any]) -> str | None:
    """Why a whole `params` object is too big, or None: at most 64 keys and 64 KiB as
    compact JSON (UTF-8)."""
    if len(params) > PARAMS_MAX_KEYS:
        return f"at most {PARAMS_MAX_KEYS} keys (has {len(params)})"
    size = len(json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode())
    if size > PARAMS_MAX_BYTES:
        return f"at most {PARAMS_MAX_BYTES:,} bytes as JSON (is {size:,})"
    return None


def _params(params: dict[str, Any]) -> dict[str, Any]:
    for key, value in params.items():
        if value is None:
            raise PydanticCustomError("param_null", "'{key}': a param's value cannot be null", {"key": key})
    problem = params_size_error(params)
    if problem is not None:
        raise PydanticCustomError("params_size", problem)
    return storable_json(params)


def _params_patch(params: dict[str, Any]) -> dict[str, Any]:
    # Nulls remove keys; the limits hold for the merged result (checked after merging).
    return storable_json(params)


ParamKey = text(1, 256)
JsonObject = Annotated[dict[str, JsonValue], AfterValidator(storable_json)]
Params = Annotated[dict[ParamKey, JsonValue], AfterValidator(_params)]  # type: ignore[valid-type]
ParamsPatch = Annotated[dict[ParamKey, JsonValue], AfterValidator(_params_patch)]  # type: ignore[valid-type]
ParamsUnset = Annotated[list[ParamKey], Field(max_length=PARAMS_MAX_KEYS)]  # type: ignore[valid-type]
ToolName = Annotated[str, Strict(), StringConstraints(pattern=TOOL_NAME_PATTERN)]
VariableName = Annotated[str, Strict(), StringConstraints(pattern=VARIABLE_NAME)]


class ToolDefinition(StrictModel):
    """A tool the model may call: what it does and its arguments' JSON Schema."""

    description: Description = Field(description="What the tool does, for the model: up to 4,096 characters.")
    parameters: JsonObject = Field(
        description="Its arguments as a JSON Schema object (draft 2020-12); an invalid schema is 422 `invalid_schema`."
    )
    strict: Annotated[bool, Strict()] | None = Field(
        None, description="Ask the provider to hold the model to the schema exactly (OpenAI's `strict`)."
    )

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"description": self.description, "parameters": self.parameters}
        if self.strict is not None:
            body["strict"] = self.strict
        return body


class ToolOverride(StrictModel):
    """In a variant: a whole tool definition (it replaces the base's tool of that name, or
    adds one), or exactly `{"disabled": true}` (the base's tool is dropped)."""

    description: Description | None = Field(None, description="As in a tool definition.")
    parameters: JsonObject | None = Field(None, description="As in a tool definition.")
    strict: Annotated[bool, Strict()] | None = Field(None, description="As in a tool definition.")
    disabled: Literal[True] | None = Field(
        None, description='`true`, alone (`{"disabled": true}`): the base config\'s tool is not served.'
    )

    @model_validator(mode="after")
    def _whole(self) -> ToolOverride:
        sent = {name for name in self.model_fields_set if getattr(self, name) is not None}
        if "disabled" in self.model_fields_set:
            if sent != {"disabled"}:
                raise PydanticCustomError("tool_disabled", 'a disabled tool is exactly {"disabled": true}')
        elif not {"description", "parameters"} <= sent:
            raise PydanticCustomError(
                "tool_incomplete",
                'a tool needs "description" and "parameters" (a whole definition), or is exactly {"disabled": true}',
            )
        return self

    def as_json(self) -> dict[str, Any]:
        if self.disabled:
            return dict(DISABLED_TOOL)
        return ToolDefinition(description=self.description, parameters=self.parameters, strict=self.strict).as_json()


class VariableDeclaration(StrictModel):
    """A template variable: its type, whether a render must give it, its default."""

    type: Literal["string", "number", "integer", "boolean"] = Field(description="What a value must be.")
    required: Annotated[bool, Strict()] | None = Field(
        None, description="Whether a render must give it (default `true`; a variable with a default is optional)."
    )
    default: text(0, 200_000) | Annotated[bool, Strict()] | int | float | None = Field(  # type: ignore[valid-type]
        None, description="The value a render uses when none is given: of the declared type."
    )
    description: Description | None = Field(None, description="What the variable is, for people.")

    @model_validator(mode="after")
    def _consistent(self) -> VariableDeclaration:
        if self.default is not None:
            problem = type_error(self.type, self.default)
            if problem is not None:
                raise PydanticCustomError("default_type", "default {problem} (the declared type)", {"problem": problem})
            if self.required:
                raise PydanticCustomError("default_required", "a variable with a default is optional: drop required")
        return self

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type}
        for name in ("required", "default", "description"):
            value = getattr(self, name)
            if value is not None:
                body[name] = int(value) if name == "default" and self.type == "integer" else value
        return body


def _plain(mapping: dict[str, Any] | None) -> dict[str, Any] | None:
    """The models of a validated mapping as JSON (a patch's nulls stay)."""
    if mapping is None:
        return None
    return {key: None if value is None else value.as_json() for key, value in mapping.items()}


Tools = Annotated[dict[ToolName, ToolDefinition], Field(max_length=TOOLS_MAX), AfterValidator(_plain)]
ToolsPatch = Annotated[dict[ToolName, ToolDefinition | None], AfterValidator(_plain)]
ToolOverrides = Annotated[dict[ToolName, ToolOverride | None], AfterValidator(_plain)]
Variables = Annotated[
    dict[VariableName, VariableDeclaration],
    Field(max_length=VARIABLES_MAX),
    AfterValidator(_plain),
]
VariablesPatch = Annotated[dict[VariableName, VariableDeclaration | None], AfterValidator(_plain)]

PARAMS_DESCRIPTION = (
    "Further model parameters (`top_p`, `stop`, `seed`, `response_format`, `reasoning_effort`, ...), passed to the "
    "model as they are: any JSON value but null, at most 64 keys and 64 KiB."
)
TOOLS_DESCRIPTION = (
    "Tool definitions by name (`^[A-Za-z0-9_-]{1,64}$`, at most 128): "
    '`{"description", "parameters": <JSON Schema>, "strict"?}`.'
)
VARIABLES_DESCRIPTION = (
    "The template variables the prompts may use, by name (`^[A-Za-z_][A-Za-z0-9_]{0,63}$`): "
    f'`{{"type": {" | ".join(VARIABLE_TYPES)}, "required"?, "default"?, "description"?}}`; every '
    "`{{name}}` in a servable template must be declared (else 422 `undeclared_variable`)."
)


def merge_keyed(current: Mapping[str, Any], patch: Mapping[str, Any], *, variant: bool) -> dict[str, Any]:
    """A merge patch of the keyed fields of `current` (a config, or a variant's overrides,
    where an empty field is left out): per key, a value sets the entry and null removes
    it; a field set to null removes every entry; `params_unset` is replaced whole."""
    merged = dict(current)
    for name in (*KEYED_FIELDS, "params_unset"):
        if name not in patch:
            continue
        value = patch[name]
        if name == "params_unset" or value is None:
            entries: Any = list(dict.fromkeys(value or ())) if name == "params_unset" else {}
        else:
            entries = dict(current.get(name) or {})
            for key, entry in value.items():
                if entry is None:
                    entries.pop(key, None)
                else:
                    entries[key] = entry
        if entries or not variant:
            merged[name] = entries
        else:
            merged.pop(name, None)
    return merged
