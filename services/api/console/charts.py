"""SVG charts for the console, drawn by our own code: no JavaScript, no fonts, no stylesheets.

Every public function returns one inline ``<svg>`` document as a string, sized by its
``viewBox`` with ``width="100%"`` so it scales with the page. The page embeds it as markup,
so every piece of text placed in it goes through :func:`_text` (characters XML forbids are
dropped, then ``html.escape``). Styling is done with presentation attributes only (``fill``,
``stroke``, ``font-size``...), never ``style=``, so a strict Content-Security-Policy holds.

Accessibility: ``role="img"`` and ``aria-labelledby`` naming the ``<title>`` and a ``<desc>``
that states every figure in words; every value is also printed as text beside its mark (so
colour is never the only carrier of meaning); colours reach WCAG contrast on white (text
4.5:1 or more, marks 3:1 or more).

Figures may be ``None`` (no data): such a mark is drawn as the words "no data". Non-finite
numbers are treated as ``None``, and figures beyond +/-1e15 are drawn at the edge of the axis,
so no coordinate is ever NaN or infinite.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "LinearScale",
    "bar_chart",
    "format_number",
    "format_percent",
    "guardrail_charts",
    "interval_chart",
    "nice_axis",
    "results_charts",
    "sequence_chart",
    "usage_chart",
]

# Geometry (viewBox units). Rows are horizontal: label column | plot | value column.
WIDTH = 640
LABEL_RIGHT = 172  # labels end here (text-anchor="end")
PLOT_X0 = 182
PLOT_X1 = 462
VALUE_X = 474  # value labels start here
LABEL_CHARS = 24  # longer labels are shortened (the full label stays in a tooltip and in <desc>)
FONT_FAMILY = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
FONT_SIZE = 13
SMALL = 12

# Colours, checked against white: text >= 4.5:1, marks >= 3:1.
TEXT = "#1f2328"  # 15.8:1
MUTED = "#57606a"  # 6.4:1 (secondary text, axis)
GRID = "#d0d7de"  # decorative grid lines only
REFERENCE = "#6e7781"  # 4.6:1 (the control's dashed line)
POINT = "#0a58ca"  # 6.0:1
BAD = "#c21c48"  # 5.6:1 (a guardrail's threshold, a breach)
PALETTE = ("#0a58ca", "#b35900", "#1a7f37", "#8250df", "#c21c48", "#0b7285")

MAX_ABS = 1e15  # figures beyond this are drawn at the edge of the axis

_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_WHITESPACE = re.compile(r"\s+")


# ---------------------------------------------------------------------------------------------
# Numbers


def finite(value: Any) -> float | None:
    """The value as a float when it is a finite real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def interval(value: Any) -> tuple[float, float] | None:
    """A ``[lo, hi]`` pair of finite numbers, in order, else None."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    lo, hi = finite(value[0]), finite(value[1])
    if lo is None or hi is None:
        return None
    return (lo, hi) if lo <= hi else (hi, lo)


def _at(items: Sequence[Any] | None, index: int) -> Any:
    return items[index] if items is not None and 0 <= index < len(items) else None


def format_number(value: Any, unit: str = "") -> str:
    """A figure for people: ``"416.7"``, ``"50,000"``, ``"1.23M"``; ``"no data"`` for None.

    Below a million, thousands separators; from a million on, k/M/B/T suffixes with three
    significant digits. The unit, when given, follows after a space.
    """
    number = finite(value)
    if number is None:
        return "no data"
    if number == 0:
        number = 0.0  # no "-0"
    size = abs(number)
    if size >= 1e15:
        text = f"{number:.2e}"
    elif size >= 1e6:
        for divisor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
            if size >= divisor:
                scaled = number / divisor
                text = f"{scaled:.3g}{suffix}" if abs(scaled) < 1000 else f"{scaled:,.0f}{suffix}"
                break
    elif size >= 100:
        text = f"{number:,.0f}"
    elif size >= 10:
        text = f"{number:.1f}"
    elif size >= 0.01 or size == 0:
        text = f"{number:.2f}"
    else:
        text = f"{number:.2g}"
    return f"{text} {unit}" if unit else text


def format_percent(value: Any) -> str:
    """A rate in [0, 1] as a percentage with one decimal: ``0.625`` -> ``"62.5%"``."""
    number = finite(value)
    if number is None:
        return "no data"
    if abs(number) >= MAX_ABS:
        return format_number(number * 100) + "%"
    text = f"{number * 100:.1f}"
    return ("0.0" if text == "-0.0" else text) + "%"


def _decimals(step: float) -> int:
    """The fewest decimals (0-9) that print multiples of ``step`` exactly enough."""
    for decimals in range(10):
        if abs(round(step, decimals) - step) <= 1e-9 * abs(step):
            return decimals
    return 9


@dataclass(frozen=True)
class LinearScale:
    """Maps the domain ``[lo, hi]`` onto ``[x0, x1]``; values outside are clipped to the edge."""

    lo: float
    hi: float
    x0: float = PLOT_X0
    x1: float = PLOT_X1

    def clipped(self, value: float) -> float:
        return min(max(value, self.lo), self.hi)

    def __call__(self, value: float) -> float:
        span = self.hi - self.lo
        if not span > 0:
            return self.x0
        return self.x0 + (self.clipped(value) - self.lo) / span * (self.x1 - self.x0)


def nice_axis(
    values: Sequence[float | None],
    *,
    lo: float | None = None,
    hi: float | None = None,
    include_zero: bool = False,
    count: int = 5,
) -> tuple[float, float, list[float]]:
    """The domain ``(lo, hi)`` and round tick values for these figures.

    A bound that is given is kept as is (ticks are the round values inside it); a bound taken
    from the data is widened to the next round tick. No finite figure at all gives ``[0, 1]``.
    """
    lo, hi = finite(lo), finite(hi)
    data = [min(max(v, -MAX_ABS), MAX_ABS) for v in (finite(x) for x in values) if v is not None]
    if include_zero:
        data.append(0.0)
    low = lo if lo is not None else (min(data) if data else (min(0.0, hi) if hi is not None else 0.0))
    high = hi if hi is not None else (max(data) if data else (max(1.0, low + 1.0) if lo is not None else 1.0))
    low, high = max(low, -MAX_ABS), min(high, MAX_ABS)
    if high < low:
        low, high = high, low
    if high - low <= 1e-9 * max(1.0, abs(low), abs(high)):  # one value: give it some room
        pad = max(abs(high) * 0.1, 1.0)
        low = low if lo is not None else low - pad
        high = high if hi is not None else high + pad
        if include_zero and data and min(data) >= 0 and lo is None:
            low = max(low, 0.0)
        if high - low <= 0:
            high = low + pad
    raw = (high - low) / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * (1 + 1e-9))
    if lo is None:
        low = math.floor(low / step + 1e-9) * step
    if hi is None:
        high = math.ceil(high / step - 1e-9) * step
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    decimals = _decimals(step) + 2
    ticks = [round(i * step, decimals) for i in range(first, last + 1)][:50]
    return low, high, ticks


def _tick_formatter(ticks: Sequence[float], percent: bool) -> Callable[[float], str]:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    if percent:
        decimals = _decimals(step * 100) if step else 0

        def as_percent(value: float) -> str:
            text = f"{value * 100:.{decimals}f}"
            return ("0" if float(text) == 0 else text) + "%"

        return as_percent
    largest = max((abs(t) for t in ticks), default=0.0)
    divisor, suffix = 1.0, ""
    # (from how large, divide by, suffix): "k" only from 10,000, so 2,500 stays "2,500".
    for threshold, size, letter in ((1e12, 1e12, "T"), (1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if largest >= threshold:
            divisor, suffix = size, letter
            break
    decimals = _decimals(step / divisor) if step else 0

    def as_number(value: float) -> str:
        text = f"{value / divisor:,.{decimals}f}"
        return "0" if float(text.replace(",", "")) == 0 else text + suffix

    return as_number


# ---------------------------------------------------------------------------------------------
# SVG text and elements


def _clean(text: Any) -> str:
    """Plain text fit for XML: forbidden characters dropped, whitespace runs made one space."""
    return _WHITESPACE.sub(" ", _XML_FORBIDDEN.sub("", str(text))).strip()


def _text(text: Any) -> str:
    """Escaped text for an element's content or an attribute value."""
    return html.escape(_clean(text), quote=True)


def _short(label: str, limit: int = LABEL_CHARS) -> str:
    label = _clean(label)
    return label if len(label) <= limit else label[: limit - 1].rstrip() + "…"


def _n(value: float) -> str:
    """A coordinate: one decimal, never NaN or infinite."""
    if not math.isfinite(value):
        value = 0.0
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _el(tag: str, content: str | None = None, **attrs: Any) -> str:
    parts = [tag]
    for key, value in attrs.items():
        name = key.rstrip("_").replace("_", "-")
        shown = _n(value) if isinstance(value, float) else _text(value)
        parts.append(f'{name}="{shown}"')
    opening = " ".join(parts)
    return f"<{opening}/>" if content is None else f"<{opening}>{content}</{tag}>"


def _label(
    text: str, x: float, y: float, *, anchor: str = "start", size: int = FONT_SIZE, fill: str = TEXT, **attrs: Any
) -> str:
    return _el("text", _text(text), x=float(x), y=float(y), text_anchor=anchor, font_size=size, fill=fill, **attrs)


def _svg(title: str, desc: str, height: float, body: list[str]) -> str:
    """The document: ``role="img"``, named by its ``<title>`` and described by its ``<desc>``."""
    title_text, desc_text = _text(title), _text(desc)
    digest = hashlib.sha256("\x00".join([title_text, desc_text, *body]).encode()).hexdigest()[:12]
    uid = f"avchart-{digest}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {_n(math.ceil(height))}" width="100%" '
        f'role="img" aria-labelledby="{uid}-title {uid}-desc" font-family="{_text(FONT_FAMILY)}" '
        f'font-size="{FONT_SIZE}" fill="{TEXT}">'
        f'<title id="{uid}-title">{title_text}</title><desc id="{uid}-desc">{desc_text}</desc>'
        + "".join(body)
        + "</svg>"
    )


def _message_chart(title: str, message: str) -> str:
    body = [_label(message, WIDTH / 2, 30, anchor="middle", fill=MUTED, font_style="italic")]
    return _svg(title, f"{_clean(title)}. {message}", 48, body)


def _row_label(label: str, y: float) -> str:
    """A row's label at the left, shortened if long, with the full label as a tooltip."""
    shown = _short(label)
    tip = _el("title", _text(label)) if shown != _clean(label) else ""
    return f"<g>{tip}{_label(shown, LABEL_RIGHT, y + 4.5, anchor='end')}</g>"


def _axis(
    scale: LinearScale, ticks: Sequence[float], top: float, bottom: float, *, percent: bool, title: str
) -> tuple[list[str], float]:
    """Grid lines, the axis line, tick labels and the axis title; returns (elements, new bottom)."""
    fmt = _tick_formatter(ticks, percent)
    out = []
    for tick in ticks:
        x = scale(tick)
        out.append(_el("line", x1=x, y1=float(top), x2=x, y2=float(bottom), stroke=GRID, stroke_width=1))
        out.append(_el("line", x1=x, y1=float(bottom), x2=x, y2=float(bottom + 4), stroke=MUTED, stroke_width=1))
        out.append(_label(fmt(tick), x, bottom + 17, anchor="middle", size=SMALL, fill=MUTED))
    out.append(
        _el(
            "line",
            x1=float(scale.x0),
            y1=float(bottom),
            x2=float(scale.x1),
            y2=float(bottom),
            stroke=MUTED,
            stroke_width=1,
        )
    )
    end = bottom + 22
    if title:
        out.append(_label(title, (scale.x0 + scale.x1) / 2, bottom + 36, anchor="middle", size=SMALL, fill=MUTED))
        end = bottom + 42
    if scale.lo < 0 < scale.hi:
        zero = scale(0.0)
        out.append(_el("line", x1=zero, y1=float(top), x2=zero, y2=float(bottom), stroke=MUTED, stroke_width=1))
    return out, end


def _legend(names: Sequence[str], colours: Sequence[str], top: float) -> tuple[list[str], float]:
    """Colour swatches with names, wrapped onto as many lines as needed; returns (elements, height)."""
    out, x, y = [], float(PLOT_X0), top
    for name, colour in zip(names, colours, strict=True):
        shown = _short(name, 30)
        width = 22 + len(shown) * 7.2 + 16
        if x + width > WIDTH and x > PLOT_X0:
            x, y = float(PLOT_X0), y + 20
        out.append(_el("rect", x=x, y=float(y), width=12.0, height=12.0, fill=colour))
        out.append(_label(shown, x + 18, y + 10.5, size=SMALL))
        x += width
    return out, y + 20 - top


# ---------------------------------------------------------------------------------------------
# Charts


def interval_chart(
    title: str,
    labels: list[str],
    values: list[float | None],
    intervals: list[tuple[float, float] | None],
    *,
    unit: str = "",
    lo: float | None = None,
    hi: float | None = None,
    percent: bool = False,
    reference: float | None = None,
) -> str:
    """One row per label: a dot at the value and whiskers over its 95% interval.

    ``percent`` shows rates in [0, 1] as percentages. ``lo``/``hi`` fix the axis (e.g. 0 and 1
    for rates); whiskers beyond it are clipped and end in an arrowhead instead of a cap.
    ``reference`` draws a dashed vertical line (the control's value). A None value is written
    "no data".
    """
    rows = len(labels)
    if rows == 0:
        return _message_chart(title, "No arms to show.")
    points = [finite(_at(values, i)) for i in range(rows)]
    bounds = [interval(_at(intervals, i)) if points[i] is not None else None for i in range(rows)]
    reference = finite(reference)
    data: list[float | None] = [*points, *(b for pair in bounds if pair for b in pair)]
    if reference is not None:
        data.append(reference)
    domain_lo, domain_hi, ticks = nice_axis(data, lo=lo, hi=hi)
    scale = LinearScale(domain_lo, domain_hi)

    def show(value: float) -> str:
        return format_percent(value) if percent else format_number(value)

    row_h, top = 34, 10
    bottom = top + rows * row_h
    body, end = _axis(scale, ticks, top, bottom, percent=percent, title=unit)
    summary = []
    for i, label in enumerate(labels):
        y = top + i * row_h + row_h / 2
        body.append(_row_label(label, y))
        value, pair = points[i], bounds[i]
        name = _clean(label) or f"Row {i + 1}"
        if value is None:
            body.append(_label("no data", PLOT_X0 + 6, y + 4.5, size=SMALL, fill=MUTED, font_style="italic"))
            summary.append(f"{name}: no data")
            continue
        marks, words = [], show(value)
        if pair is not None:
            low, high = pair
            x_lo, x_hi = scale(low), scale(high)
            marks.append(_el("line", class_="ci", x1=x_lo, y1=y, x2=x_hi, y2=y, stroke=POINT, stroke_width=2))
            for end_value, x, outward in ((low, x_lo, -1), (high, x_hi, 1)):
                if scale.clipped(end_value) == end_value:
                    marks.append(_el("line", x1=x, y1=y - 6, x2=x, y2=y + 6, stroke=POINT, stroke_width=2))
                else:  # the interval runs past the axis: an arrowhead at the edge
                    tip = x + 6 * outward
                    marks.append(
                        _el("polygon", points=f"{_n(tip)},{_n(y)} {_n(x)},{_n(y - 5)} {_n(x)},{_n(y + 5)}", fill=POINT)
                    )
            joint = " to " if low < 0 else "–"  # "-0.30–0.06" would read as a range of negatives
            words = f"{show(value)} ({show(low)}{joint}{show(high)})"
            spoken = f"{name}: {show(value)}, 95% interval {show(low)} to {show(high)}"
        else:
            spoken = f"{name}: {show(value)}, no interval"
        marks.append(
            _el("circle", class_="point", cx=scale(value), cy=y, r=5.0, fill=POINT, stroke="#ffffff", stroke_width=1.5)
        )
        marks.append(_label(words, VALUE_X, y + 4.5, size=SMALL))
        body.append(f"<g>{_el('title', _text(spoken))}{''.join(marks)}</g>")
        summary.append(spoken)
    notes = "Dot: observed value. Whiskers: 95% interval."
    if reference is not None:
        x = scale(reference)
        body.append(
            _el(
                "line",
                class_="reference",
                x1=x,
                y1=float(top - 4),
                x2=x,
                y2=float(bottom),
                stroke=REFERENCE,
                stroke_width=1.5,
                stroke_dasharray="5 4",
            )
        )
        notes += " Dashed line: control."
    body.append(_label(notes, PLOT_X0, end + 8, size=SMALL, fill=MUTED))
    desc = f"{_clean(title)}, with 95% intervals. " + "; ".join(summary) + "."
    return _svg(title, desc, end + 16, body)


def bar_chart(title: str, labels: list[str], series: dict[str, list[float | None]], *, unit: str = "") -> str:
    """Grouped horizontal bars: one group per label, one bar per series, with a legend.

    Every bar's value is printed beside it, prefixed by its series name; a None value is
    written "no data".
    """
    names = list(series)
    rows = len(labels)
    if rows == 0 or not names:
        return _message_chart(title, "Nothing to show.")
    colours = [PALETTE[k % len(PALETTE)] for k in range(len(names))]
    grid = [[finite(_at(series[name], i)) for name in names] for i in range(rows)]
    domain_lo, domain_hi, ticks = nice_axis([v for row in grid for v in row], include_zero=True)
    scale = LinearScale(domain_lo, domain_hi)
    zero = scale(0.0)

    legend, legend_h = _legend(names, colours, 8)
    bar_h, gap = 14, 4
    row_h = len(names) * (bar_h + gap) + 14
    top = 8 + legend_h + 6
    bottom = top + rows * row_h
    body, end = _axis(scale, ticks, top, bottom, percent=False, title=unit)
    body[:0] = legend
    summary = []
    for i, label in enumerate(labels):
        row_top = top + i * row_h + 7
        body.append(_row_label(label, top + i * row_h + row_h / 2))
        name = _clean(label) or f"Row {i + 1}"
        parts = []
        for k, series_name in enumerate(names):
            y = row_top + k * (bar_h + gap)
            value = grid[i][k]
            text = f"{_short(series_name, 14)}: {format_number(value, unit)}"
            spoken = f"{name}, {_clean(series_name)}: {format_number(value, unit)}"
            parts.append(f"{_clean(series_name)} {format_number(value, unit)}")
            if value is None:
                body.append(_label("no data", zero + 4, y + bar_h - 3, size=11, fill=MUTED, font_style="italic"))
            else:
                x = scale(value)
                left, width = min(x, zero), abs(x - zero)
                body.append(
                    f"<g>{_el('title', _text(spoken))}"
                    + _el("rect", class_="bar", x=left, y=float(y), width=width, height=float(bar_h), fill=colours[k])
                    + "</g>"
                )
            body.append(_label(text, VALUE_X, y + bar_h - 3, size=SMALL))
        summary.append(f"{name}: " + ", ".join(parts))
    desc = f"{_clean(title)}. " + "; ".join(summary) + "."
    return _svg(title, desc, end + 6, body)


def _arm_name(names: Sequence[str], index: int) -> str:
    name = _at(names, index)
    if isinstance(name, str) and _clean(name):
        return name
    return "Control" if index == 0 else f"Arm {index}"


def results_charts(results: dict, names: list[str]) -> list[tuple[str, str]]:
    """(heading, svg) pairs for an ``experiment_results`` object.

    Success rate with 95% interval (percent, axis 0-100%), score mean with 95% interval,
    latency p50/p95 in ms, and tokens per run (mean input / mean output). ``names[i]`` is
    the display name of arm i; missing names fall back to "Control" / "Arm i".
    """
    arms = [arm for arm in (results.get("arms") or []) if isinstance(arm, dict)]
    labels = [_arm_name(names, i) for i in range(len(arms))]
    control = arms[0] if arms else {}

    def column(key: str) -> list[Any]:
        return [arm.get(key) for arm in arms]

    success = interval_chart(
        "Success rate by arm",
        labels,
        column("success_rate"),
        column("success_rate_ci"),
        unit="Success rate",
        lo=0.0,
        hi=1.0,
        percent=True,
        reference=control.get("success_rate"),
    )
    score = interval_chart(
        "Mean score by arm",
        labels,
        column("score_mean"),
        column("score_mean_ci"),
        unit="Mean score",
        reference=control.get("score_mean"),
    )
    latency = bar_chart(
        "Latency by arm (median p50 and 95th percentile p95)",
        labels,
        {"p50": column("latency_ms_p50"), "p95": column("latency_ms_p95")},
        unit="ms",
    )
    tokens = bar_chart(
        "Mean tokens per run by arm",
        labels,
        {"input": column("mean_input_tokens"), "output": column("mean_output_tokens")},
        unit="tokens",
    )
    return [
        ("Success rate (95% interval)", success),
        ("Mean score (95% interval)", score),
        ("Latency (p50 and p95, ms)", latency),
        ("Tokens per run (mean input and output)", tokens),
    ]


def usage_chart(usage: dict, names: dict[str | None, str]) -> str:
    """Usage per variant: stacked input/output token bars, then a bar of runs (outcomes).

    ``names`` maps a variant id (None for the base config) to its display name; an unknown
    id is shown as is.
    """
    entries = [entry for entry in (usage.get("by_variant") or []) if isinstance(entry, dict)]
    title = "Usage by variant: tokens and runs"
    if not entries:
        return _message_chart(title, "No usage recorded yet.")

    def count(entry: dict, key: str) -> float:
        number = finite(entry.get(key))
        return max(number, 0.0) if number is not None else 0.0

    labels = []
    for entry in entries:
        variant = entry.get("variant_id")
        known = names.get(variant) if isinstance(variant, str | None) else None
        labels.append(known or (str(variant) if variant is not None else "Base config"))
    inputs = [count(e, "input_tokens") for e in entries]
    outputs = [count(e, "output_tokens") for e in entries]
    totals = [a + b for a, b in zip(inputs, outputs, strict=True)]
    runs = [count(e, "outcomes") for e in entries]
    colours = (PALETTE[0], PALETTE[1])

    body: list[str] = [_label("Tokens", 10, 22, size=FONT_SIZE, font_weight="bold")]
    legend, legend_h = _legend(["input tokens", "output tokens"], colours, 10)
    body += legend
    row_h, bar_h = 28, 16
    top = 10 + legend_h + 4
    bottom = top + len(entries) * row_h
    lo, hi, ticks = nice_axis(totals, include_zero=True)
    scale = LinearScale(lo, hi)
    axis, end = _axis(scale, ticks, top, bottom, percent=False, title="tokens")
    body += axis
    for i, label in enumerate(labels):
        y = top + i * row_h + (row_h - bar_h) / 2
        body.append(_row_label(label, y + bar_h / 2))
        x = scale(0.0)
        for part, colour, kind in ((inputs[i], colours[0], "input"), (outputs[i], colours[1], "output")):
            width = scale(scale.lo + part) - scale(scale.lo) if part else 0.0
            width = min(width, PLOT_X1 - x)
            if width > 0:
                tip = _el("title", _text(f"{_clean(label)}: {format_number(part)} {kind} tokens"))
                body.append(
                    f"<g>{tip}"
                    + _el(
                        "rect",
                        class_="bar",
                        x=x,
                        y=float(y),
                        width=width,
                        height=float(bar_h),
                        fill=colour,
                        stroke="#ffffff",
                        stroke_width=1,
                    )
                    + "</g>"
                )
                x += width
        body.append(_label(format_number(totals[i], "tokens"), VALUE_X, y + bar_h - 4, size=SMALL))

    section = end + 14
    body.append(_label("Runs (outcomes reported)", 10, section + 12, size=FONT_SIZE, font_weight="bold"))
    top = section + 22
    bottom = top + len(entries) * row_h
    lo, hi, ticks = nice_axis(runs, include_zero=True)
    scale = LinearScale(lo, hi)
    axis, end = _axis(scale, ticks, top, bottom, percent=False, title="runs")
    body += axis
    for i, label in enumerate(labels):
        y = top + i * row_h + (row_h - bar_h) / 2
        body.append(_row_label(label, y + bar_h / 2))
        width = scale(runs[i]) - scale(0.0)
        if width > 0:
            tip = _el("title", _text(f"{_clean(label)}: {format_number(runs[i])} runs"))
            body.append(
                f"<g>{tip}"
                + _el("rect", class_="bar", x=scale(0.0), y=float(y), width=width, height=float(bar_h), fill=PALETTE[2])
                + "</g>"
            )
        body.append(_label(format_number(runs[i], "runs"), VALUE_X, y + bar_h - 4, size=SMALL))

    def whole(key: str, fallback: float) -> str:
        number = finite(usage.get(key))
        return format_number(number if number is not None else fallback)

    summary = "; ".join(
        f"{_clean(label) or 'Unnamed'}: {format_number(totals[i])} tokens ({format_number(inputs[i])} input, "
        f"{format_number(outputs[i])} output) over {format_number(runs[i])} runs"
        for i, label in enumerate(labels)
    )
    desc = (
        f"Usage by variant. In all: {whole('total_tokens', sum(totals))} tokens "
        f"({whole('input_tokens', sum(inputs))} input, {whole('output_tokens', sum(outputs))} output) over "
        f"{whole('outcomes', sum(runs))} runs. {summary}."
    )
    return _svg(title, desc, end + 6, body)


# ---------------------------------------------------------------------------------------------
# A rollout's guardrail over time

SEQ_X0, SEQ_X1 = 76.0, 520.0  # the plot; y tick labels end left of it, the threshold's label right of it
SEQ_TOP, SEQ_HEIGHT = 28.0, 200.0
# (seconds per unit, its name): the time axis counts minutes, hours or days since the start.
_TIME_UNITS = ((1.0, "seconds"), (60.0, "minutes"), (3600.0, "hours"), (86400.0, "days"))


def _time_unit(span: float) -> tuple[float, str]:
    if span <= 180:
        return _TIME_UNITS[0]
    if span <= 3 * 3600:
        return _TIME_UNITS[1]
    if span <= 3 * 86400:
        return _TIME_UNITS[2]
    return _TIME_UNITS[3]


def _runs(points: Sequence[tuple[float, Any]]) -> list[list[tuple[float, Any]]]:
    """Consecutive points whose value is not None, as runs (a gap breaks a line)."""
    runs: list[list[tuple[float, Any]]] = [[]]
    for x, value in points:
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, value))
    return [run for run in runs if run]


def sequence_chart(
    title: str,
    seconds: Sequence[Any],
    estimates: Sequence[Any],
    bands: Sequence[Any],
    *,
    threshold: Any,
    axis_title: str = "",
    percent: bool = False,
    steps: Sequence[tuple[Any, Any]] = (),
    breached: Sequence[bool] = (),
) -> str:
    """A guardrail's confidence sequence over time: the estimate as a line, its 95% band
    ``[lo, hi]`` shaded with its edges drawn, 0 (no difference) as a solid line and
    ``threshold`` (the most it may get worse, a negative figure) as a dashed red one.

    ``seconds`` are the figures' times since the rollout started; ``steps`` are ``(seconds,
    percent)`` where each step began (drawn as dotted lines labelled with the percent);
    ``breached`` marks the figures where the guardrail was breached. ``percent`` shows
    differences of rates (``-0.02``) as points of percent (``-2%``). A figure without a
    value (too few outcomes yet) is a gap.
    """
    count = len(seconds)
    times = [finite(_at(seconds, i)) for i in range(count)]
    values = [finite(_at(estimates, i)) if times[i] is not None else None for i in range(count)]
    pairs = [interval(_at(bands, i)) if values[i] is not None else None for i in range(count)]
    limit = finite(threshold)
    shown = [i for i in range(count) if values[i] is not None]
    if not shown:
        return _message_chart(title, "No figures yet: each arm needs 2 outcomes carrying the metric in a step.")
    data: list[float | None] = [0.0, *(values[i] for i in shown)]
    data += [end for pair in pairs if pair is not None for end in pair]
    if limit is not None:
        data.append(limit)
    y_lo, y_hi, y_ticks = nice_axis(data, count=6)
    bottom = SEQ_TOP + SEQ_HEIGHT
    y = LinearScale(y_lo, y_hi, x0=bottom, x1=SEQ_TOP)
    span = max((t for t in times if t is not None), default=0.0)
    span = max(span, *(t for t in (finite(at) for at, _ in steps) if t is not None), 0.0)
    size, unit = _time_unit(span)
    x_lo, x_hi, x_ticks = nice_axis([0.0, span / size], lo=0.0, count=6)
    x = LinearScale(x_lo * size, x_hi * size, x0=SEQ_X0, x1=SEQ_X1)
    y_fmt = _tick_formatter(y_ticks, percent)
    x_fmt = _tick_formatter(x_ticks, False)

    def show(value: float) -> str:
        return format_percent(value) if percent else format_number(value)

    body: list[str] = []
    for tick in y_ticks:
        at = y(tick)
        body.append(_el("line", x1=SEQ_X0, y1=at, x2=SEQ_X1, y2=at, stroke=GRID, stroke_width=1))
        body.append(_label(y_fmt(tick), SEQ_X0 - 6, at + 4, anchor="end", size=SMALL, fill=MUTED))
    for tick in x_ticks:
        at = x(tick * size)
        body.append(_el("line", x1=at, y1=bottom, x2=at, y2=bottom + 4, stroke=MUTED, stroke_width=1))
        body.append(_label(x_fmt(tick), at, bottom + 17, anchor="middle", size=SMALL, fill=MUTED))
    body.append(_el("line", x1=SEQ_X0, y1=bottom, x2=SEQ_X1, y2=bottom, stroke=MUTED, stroke_width=1))
    body.append(_label(f"{unit} since the start", (SEQ_X0 + SEQ_X1) / 2, bottom + 34, anchor="middle", size=SMALL))
    if axis_title:
        body.append(_label(axis_title, SEQ_X0, SEQ_TOP - 12, size=SMALL, fill=MUTED))
    for begun, share in steps:
        began, percent_of = finite(begun), finite(share)
        if began is None or began <= 0 or percent_of is None:
            continue
        body.append(
            _el(
                "line",
                class_="step",
                x1=x(began),
                y1=SEQ_TOP,
                x2=x(began),
                y2=bottom,
                stroke=MUTED,
                stroke_dasharray="2 3",
            )
        )
        body.append(_label(f"{percent_of:g}%", x(began) + 3, SEQ_TOP + 11, size=11, fill=MUTED))
    timed = [(i, t) for i, t in enumerate(times) if t is not None]
    # The band, one polygon per run of figures that have one, and its edges.
    for run in _runs([(t, pairs[i]) for i, t in timed]):
        upper = " ".join(f"{_n(x(t))},{_n(y(pair[1]))}" for t, pair in run)
        lower = " ".join(f"{_n(x(t))},{_n(y(pair[0]))}" for t, pair in reversed(run))
        body.append(_el("polygon", class_="cs", points=f"{upper} {lower}", fill=POINT, fill_opacity="0.15"))
        if len(run) == 1:  # one figure has no area: its sequence is a whisker
            began, pair = run[0]
            body.append(
                _el("line", class_="cs-whisker", x1=x(began), y1=y(pair[0]), x2=x(began), y2=y(pair[1]), stroke=POINT)
            )
        for edge in (0, 1):
            line = " ".join(f"{_n(x(t))},{_n(y(pair[edge]))}" for t, pair in run)
            body.append(_el("polyline", class_="cs-edge", points=line, fill="none", stroke=POINT, stroke_width=1))
    zero = y(0.0)
    body.append(_el("line", class_="zero", x1=SEQ_X0, y1=zero, x2=SEQ_X1, y2=zero, stroke=TEXT, stroke_width=1))
    body.append(_label("no difference", SEQ_X1 + 6, zero - 3, size=SMALL))  # above its line, the limit's below
    if limit is not None:
        at = y(limit)
        body.append(
            _el(
                "line",
                class_="threshold",
                x1=SEQ_X0,
                y1=at,
                x2=SEQ_X1,
                y2=at,
                stroke=BAD,
                stroke_width=2,
                stroke_dasharray="6 4",
            )
        )
        # Below its line (the zero's label is above its own), unless that is the x axis's place.
        below = at + 13 if at + 13 < bottom - 2 else at - 4
        body.append(_label(f"limit {show(limit)}", SEQ_X1 + 6, below, size=SMALL, fill=BAD))
    for run in _runs([(t, values[i]) for i, t in timed]):
        line = " ".join(f"{_n(x(t))},{_n(y(value))}" for t, value in run)
        body.append(_el("polyline", class_="estimate", points=line, fill="none", stroke=POINT, stroke_width=2))
    last = shown[-1]
    for i in shown:
        hit = bool(_at(breached, i))
        if hit or i == last:
            marker = _el(
                "circle",
                class_="breach" if hit else "point",
                cx=x(times[i] or 0.0),
                cy=y(values[i] or 0.0),
                r=4.5,
                fill=BAD if hit else POINT,
                stroke="#ffffff",
                stroke_width=1.5,
            )
            body.append(marker)
    latest, band = values[last] or 0.0, pairs[last]
    words = f"latest {show(latest)}" + (f" ({show(band[0])} to {show(band[1])})" if band else "")
    body.append(_label(words, SEQ_X0, bottom + 52, size=SMALL))
    body.append(
        _label("Line: the estimate. Band: its 95% confidence sequence.", SEQ_X0, bottom + 70, size=SMALL, fill=MUTED)
    )
    body.append(
        _label("Solid line: no difference. Dashed red line: the limit.", SEQ_X0, bottom + 86, size=SMALL, fill=MUTED)
    )
    when = format_number((times[last] or 0.0) / size)
    desc = (
        f"{_clean(title)}. {len(shown)} figures over {format_number(span / size)} {unit}. Latest, at {when} {unit}: "
        f"estimate {show(latest)}"
        + (f", 95% confidence sequence {show(band[0])} to {show(band[1])}" if band else ", no confidence sequence yet")
        + (f"; the limit is {show(limit)}" if limit is not None else "")
        + ("; breached." if any(_at(breached, i) for i in shown) else "; not breached.")
    )
    return _svg(title, desc, bottom + 96, body)


# What each guardrail's chart plots, oriented as the contract orients it (below 0 is worse).
_GUARDRAIL_AXES = {
    "success_rate": ("Success rate", "variant − live config, success rate (below 0: the variant succeeds less)"),
    "score_mean": ("Mean score", "variant − live config, mean score (below 0: the variant scores lower)"),
    "latency_ms_mean": ("Mean latency", "live config − variant, mean latency in ms (below 0: the variant is slower)"),
    "cost_usd_mean": ("Mean cost", "live config − variant, mean cost in USD (below 0: the variant costs more)"),
    "output_tokens_mean": (
        "Mean output tokens",
        "live config − variant, mean output tokens (below 0: the variant writes more)",
    ),
}


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def guardrail_charts(
    rollout: dict[str, Any], history: Sequence[dict[str, Any]], *, now: datetime | None = None
) -> list[tuple[str, str, str]]:
    """(metric, heading, svg) for each guardrail of a rollout (the experiment object): its
    confidence sequence over time from ``history`` (``guardrail_history``'s figures, oldest
    first, each with ``at``, ``step``, ``percent`` and ``guardrails``), against the line at
    ``-max_degradation``. A live rollout's current ``progress`` is drawn last, at ``now``."""
    started = _instant(rollout.get("started_at"))
    steps = rollout.get("steps") or []
    records = list(history)
    progress = rollout.get("progress")
    if now is not None and rollout.get("status") in ("running", "paused") and isinstance(progress, dict):
        records.append({"at": now, "step": progress.get("step"), "percent": progress.get("percent"), **progress})
    out = []
    for guardrail in rollout.get("guardrails") or []:
        metric = guardrail.get("metric")
        noun, axis = _GUARDRAIL_AXES.get(metric, (str(metric), "variant − live config (below 0: worse)"))
        seconds, estimates, bands, breached = [], [], [], []
        first = steps[0].get("percent") if steps and isinstance(steps[0], dict) else None
        marks: list[tuple[Any, Any]] = [(0.0, first)]
        step = 0
        for record in records:
            at = _instant(record.get("at"))
            figures = next((f for f in record.get("guardrails") or [] if f.get("metric") == metric), None)
            if at is None or started is None or figures is None:
                continue
            elapsed = max((at - started).total_seconds(), 0.0)
            if isinstance(record.get("step"), int) and record["step"] > step:
                step = record["step"]
                marks.append((elapsed, record.get("percent")))
            seconds.append(elapsed)
            estimates.append(figures.get("estimate"))
            bands.append(figures.get("cs"))
            breached.append(bool(figures.get("breached")))
        limit = finite(guardrail.get("max_degradation"))
        svg = sequence_chart(
            f"{noun}: the variant against the live config over time",
            seconds,
            estimates,
            bands,
            threshold=-limit if limit is not None else None,
            axis_title=axis,
            percent=metric == "success_rate",
            steps=marks,
            breached=breached,
        )
        out.append((str(metric), noun, svg))
    return out
