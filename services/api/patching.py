"""JSON merge patch (RFC 7396) on the flat objects the API patches: overrides, metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.api.exceptions import FieldError, ValidationFailed
from services.api.schemas import METADATA_MAX_PAIRS


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


def merge_metadata(current: Mapping[str, str], patch: Mapping[str, str | None] | None) -> dict[str, str]:
    """Merge-patch metadata; the 16-pair limit holds for the result."""
    merged = merge_patch(current, patch)
    if len(merged) > METADATA_MAX_PAIRS:
        message = f"at most {METADATA_MAX_PAIRS} pairs (this patch would leave {len(merged)})"
        raise ValidationFailed(f"Invalid field: metadata ({message})", errors=[FieldError("metadata", message)])
    return merged
