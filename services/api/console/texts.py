"""Long texts on console pages: a short preview of a long value (the page collapses the
rest), and a line diff of two texts (only the changed lines, with a little context).

A system prompt may hold 200,000 characters: shown whole, it made a page 26,000 px tall, and
a comparison showed two whole prompts side by side to point at one changed line. Templates
call these (`web` registers them); Jinja escapes what they return like any value.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, Literal

LONG_LINES = 8  # a text of more lines than this is collapsed
LONG_CHARS = 600  # or of more characters
HEAD_LINES = 3  # what a collapsed text shows: its first lines,
HEAD_CHARS = 240  # and at most this many characters of them
CONTEXT = 2  # unchanged lines shown around each change of a line diff
SHOWN_DIFF = 40  # lines of a line diff shown before the rest is collapsed too
PLACEHOLDER_CHARS = 120  # a placeholder shows what a field inherits, not all of it
SHORT_JSON = 60  # characters of compact JSON an object or list may take and stay on one line


@dataclass(frozen=True)
class Preview:
    """A long text's first lines, and how long it is."""

    head: str
    lines: int
    chars: int


def line_count(text: str) -> int:
    return text.count("\n") + 1


def is_long(value: Any) -> bool:
    return isinstance(value, str) and (len(value) > LONG_CHARS or line_count(value) > LONG_LINES)


def preview(value: Any) -> Preview | None:
    """None for a value short enough to show whole; for a long text, its first lines."""
    if not is_long(value):
        return None
    head = "\n".join(value.split("\n", HEAD_LINES)[:HEAD_LINES])
    if len(head) > HEAD_CHARS:
        head = head[:HEAD_CHARS]
    return Preview(head=head.rstrip() + "…", lines=line_count(value), chars=len(value))


def placeholder(value: Any) -> Any:
    """What a form's placeholder shows of an inherited value: a long text's first line,
    cut, and its length (a placeholder of 100 KB would be sent with every page)."""
    if not is_long(value):
        return value
    first = value.split("\n", 1)[0][:PLACEHOLDER_CHARS]
    return f"{first}… ({line_count(value):,} lines, {len(value):,} characters)"


def json_text(value: Any) -> str | None:
    """An object or a list (a tool, a variable, a param's object) too long for a line, as
    indented JSON; None for other values and short ones, which are shown on one line."""
    if not isinstance(value, dict | list):
        return None
    if len(json.dumps(value, ensure_ascii=False, separators=(",", ":"))) <= SHORT_JSON:
        return None
    return json.dumps(value, indent=2, ensure_ascii=False)


def json_head(value: Any) -> str:
    """What a collapsed object or list shows: its compact JSON's start, on one line."""
    compact = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return compact if len(compact) <= PLACEHOLDER_CHARS else compact[:PLACEHOLDER_CHARS] + "…"


@dataclass(frozen=True)
class DiffLine:
    """One line of a line diff: a hunk's header ("lines 599-603 → 599-603"), an unchanged
    line of context, or a removed or added line."""

    kind: Literal["hunk", "same", "removed", "added"]
    text: str


@dataclass(frozen=True)
class LineDiff:
    lines: list[DiffLine]
    removed: int
    added: int

    @property
    def shown(self) -> list[DiffLine]:
        return self.lines[:SHOWN_DIFF]

    @property
    def rest(self) -> list[DiffLine]:
        """What is collapsed (a whole prompt replaced by another is a long diff too)."""
        return self.lines[SHOWN_DIFF:]


def _span(start: int, count: int) -> str:
    if count == 0:
        return f"none after line {start}"
    return f"line {start + 1}" if count == 1 else f"lines {start + 1}–{start + count}"


def line_diff(before: Any, after: Any) -> LineDiff | None:
    """The line diff of two texts, when comparing them by line says more than showing both:
    both are texts and one has several lines or is long. None otherwise (numbers, short
    texts, a value that is not set on one side): those stay shown as from → to. Two
    objects or lists (a tool's new schema), one of them too long for a line, are compared
    as their indented JSON."""
    if isinstance(before, dict | list) and isinstance(after, dict | list):
        if json_text(before) is None and json_text(after) is None:
            return None
        before = json.dumps(before, indent=2, ensure_ascii=False)
        after = json.dumps(after, indent=2, ensure_ascii=False)
    if not (isinstance(before, str) and isinstance(after, str)):
        return None
    if not (is_long(before) or is_long(after) or "\n" in before or "\n" in after):
        return None
    old, new = before.split("\n"), after.split("\n")
    lines: list[DiffLine] = []
    removed = added = 0
    for group in _grouped(_opcodes(old, new), CONTEXT):
        first, last = group[0], group[-1]
        lines.append(DiffLine("hunk", f"{_span(first[1], last[2] - first[1])} → {_span(first[3], last[4] - first[3])}"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines.extend(DiffLine("same", line) for line in old[i1:i2])
                continue
            lines.extend(DiffLine("removed", line) for line in old[i1:i2])
            lines.extend(DiffLine("added", line) for line in new[j1:j2])
            removed += i2 - i1
            added += j2 - j1
    return LineDiff(lines, removed, added)


Opcode = tuple[str, int, int, int, int]  # difflib's (tag, i1, i2, j1, j2)
MATCHED_AT_MOST = 4_000_000  # lines before x lines after left once the common ends are cut


def _opcodes(old: list[str], new: list[str]) -> list[Opcode]:
    """difflib's opcodes, bounded in time: the lines both texts start and end with are cut
    first (an edit of a prompt is mostly local), and a middle still too large to match
    (SequenceMatcher is quadratic at worst: 3 s for two 40,000-line texts) is one replacement."""
    start = 0
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end = 0
    while end < min(len(old), len(new)) - start and old[-1 - end] == new[-1 - end]:
        end += 1
    middle_old, middle_new = old[start : len(old) - end], new[start : len(new) - end]
    codes: list[Opcode] = [("equal", 0, start, 0, start)] if start else []
    if len(middle_old) * len(middle_new) > MATCHED_AT_MOST:
        codes.append(("replace", start, len(old) - end, start, len(new) - end))
    else:
        matcher = difflib.SequenceMatcher(None, middle_old, middle_new)
        codes.extend(
            (tag, i1 + start, i2 + start, j1 + start, j2 + start) for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        )
    if end:
        codes.append(("equal", len(old) - end, len(old), len(new) - end, len(new)))
    return [code for code in codes if code[1] != code[2] or code[3] != code[4]]


def _grouped(codes: list[Opcode], context: int) -> list[list[Opcode]]:
    """The changes with `context` unchanged lines around each, as difflib's
    `get_grouped_opcodes` groups them (a run of more than twice that splits two groups)."""
    if not codes or all(code[0] == "equal" for code in codes):
        return []
    codes = list(codes)
    if codes[0][0] == "equal":
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = tag, max(i1, i2 - context), i2, max(j1, j2 - context), j2
    if codes[-1][0] == "equal":
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)
    groups: list[list[Opcode]] = []
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * context:
            group.append((tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - context), max(j1, j2 - context)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups
