"""Request and response shapes shared by the resources: config fields, names, metadata."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    create_model,
)
from pydantic_core import PydanticCustomError

from services.api.slugs import RESERVED_VARIANT_SLUGS, slugify
from services.shared.agent_config import (
    CONFIG_FIELDS,
    INTEGER_FIELDS,
    NUMBER_FIELDS,
    STRING_FIELDS,
)
from services.shared.identifiers import PREFIXES, SLUG_MAX_LENGTH, is_id


def _storable(value: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates (which JSON can spell)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogate code points)") from None
    return value


def text(min_length: int = 0, max_length: int | None = None) -> Any:
    """A strict string of min..max characters that PostgreSQL can store."""
    return Annotated[
        str,
        Strict(),
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_storable),
    ]


Name = text(1, 256)
Description = text(0, 4096)
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


def cursor(kind: str) -> Any:
    """The `after` query parameter of a list of `kind`: a well-formed id, or absent."""

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


def _field_type(name: str) -> Any:
    if name in STRING_FIELDS:
        return text(*STRING_FIELDS[name])
    if name in NUMBER_FIELDS:
        low, high = NUMBER_FIELDS[name]
        return Annotated[float, Strict(), Field(ge=low, le=high, allow_inf_nan=False)]
    low, high = INTEGER_FIELDS[name]
    return Annotated[int, Strict(), Field(ge=low, le=high)]


CONFIG_TYPES: dict[str, Any] = {name: _field_type(name) for name in CONFIG_FIELDS}
# In responses, plain types: what is stored is shown as it is. The limits are the requests'
# (and the database's CHECKs); a read never re-checks them, so tightening one later cannot
# make old rows unreadable, and a 200,000-character prompt is not scanned on every read.
CONFIG_READ_TYPES: dict[str, Any] = {
    name: str if name in STRING_FIELDS else float if name in NUMBER_FIELDS else int for name in CONFIG_FIELDS
}


class StrictModel(BaseModel):
    """Request bodies: unknown fields are a 422, never silently dropped."""

    model_config = ConfigDict(extra="forbid")


# On create: model_provider and model_name required, the rest default (null = default).
AgentConfigCreate = create_model(  # type: ignore[call-overload]
    "AgentConfigCreate",
    __base__=StrictModel,
    __doc__="An agent's base config on create; omitted or null fields take their default.",
    **{
        name: (
            (CONFIG_TYPES[name], ...) if name in ("model_provider", "model_name") else (CONFIG_TYPES[name] | None, None)
        )
        for name in CONFIG_FIELDS
    },
)

# Sparse: any subset. In a variant, null means "inherit" (removes the override).
ConfigOverrides = create_model(  # type: ignore[call-overload]
    "ConfigOverrides",
    __base__=StrictModel,
    __doc__="Any subset of the twelve fields; null removes an override (inherit again).",
    **{name: (CONFIG_TYPES[name] | None, None) for name in CONFIG_FIELDS},
)


# In responses: all twelve, as stored.
AgentConfigRead = create_model(  # type: ignore[call-overload]
    "AgentConfigRead",
    __doc__="The agent's base config: all twelve fields.",
    **{name: (CONFIG_READ_TYPES[name], ...) for name in CONFIG_FIELDS},
)

# In responses: only the fields a variant sets are present, and none is ever null.
ConfigOverridesRead = create_model(  # type: ignore[call-overload]
    "ConfigOverridesRead",
    __doc__="The fields a variant overrides (the others are inherited from the agent).",
    **{name: (CONFIG_READ_TYPES[name], None) for name in CONFIG_FIELDS},
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


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a list, newest first."""

    object: Literal["list"]
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool
