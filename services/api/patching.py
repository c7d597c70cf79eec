"""JSON merge patch (RFC 7396) on the flat objects the API patches: overrides, metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.api.exceptions import FieldError, ValidationFailed
from services.api.keyed_fields import merge_keyed
from services.api.schemas import METADATA_MAX_PAIRS
from services.shared.agent_config import CONFIG_FIELDS


def merge_patch(current: Mapping[str, Any], patch: Mapping[str, Any] | None) -> dict[str, Any]:
    """A value sets a member, null removes it, members not named stay; a null patch clears all."""
    if patch is None:
        return {}
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merge_overrides(current: Mapping[str, Any], patch: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge-patch a variant's overrides: a twelve-field override set or removed (null), a
    keyed field's entries set or removed key by key (`merge_keyed`); a null patch clears all."""
    if patch is None:
        return {}
    merged = merge_patch(current, {name: value for name, value in patch.items() if name in CONFIG_FIELDS})
    return merge_keyed(merged, patch, variant=True)


def merge_metadata(current: Mapping[str, str], patch: Mapping[str, str | None] | None) -> dict[str, str]:
    """Merge-patch metadata; the 16-pair limit holds for the result."""
    merged = merge_patch(current, patch)
    if len(merged) > METADATA_MAX_PAIRS:
        message = f"at most {METADATA_MAX_PAIRS} pairs (this patch would leave {len(merged)})"
        raise ValidationFailed(f"Invalid field: metadata ({message})", errors=[FieldError("metadata", message)])
    return merged
