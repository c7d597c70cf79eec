"""A plain-language reading of an experiment's results, for people who do not read p-values.

:func:`reading` turns an ``experiment_results`` object into sentences that never claim more
than the figures support:

- a comparison with fewer than ``min_outcomes`` outcomes on either side, or without a
  p-value, is "not enough data yet", with the counts;
- ``p >= alpha`` is "no detectable difference", with the observed difference and the
  p-value, and the reminder that this does not show the two are the same;
- ``p < alpha`` is "evidence that ... is higher/lower", by the observed difference, with the
  p-value and the arm's 95% interval (never "proves", never "better": a higher score is not
  necessarily a better one);
- more than one comparison adds a note on multiple comparisons (with the Bonferroni
  threshold), and the experiment's status says whether the figures may still change.

Plain text only: the page escapes it like any other text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.api.console.charts import finite, interval

__all__ = ["format_p_value", "reading"]

MIN_OUTCOMES = 30


@dataclass(frozen=True)
class _Metric:
    noun: str  # "success rate"
    value_key: str
    interval_key: str
    diff_key: str
    p_key: str
    percent: bool


_METRICS = (
    _Metric("success rate", "success_rate", "success_rate_ci", "success_rate_diff", "success_p_value", True),
    _Metric("mean score", "score_mean", "score_mean_ci", "score_mean_diff", "score_p_value", False),
)


def _count(value: Any) -> int:
    number = finite(value)
    return int(number) if number is not None and number > 0 else 0


def format_p_value(p: float, alpha: float = 0.05) -> str:
    """``"p = 0.032"``, or ``"p < 0.001"``; more decimals when three would round across ``alpha``."""
    p = min(max(p, 0.0), 1.0)
    if p < 0.001:
        return "p < 0.001"
    for decimals in range(3, 7):
        shown = round(p, decimals)
        if (shown < alpha) == (p < alpha):
            break
    return f"p = {p:.{decimals}f}"


def _percent(value: float) -> str:
    text = f"{value * 100:.1f}"
    return ("0.0" if text == "-0.0" else text) + "%"


def _number(value: float) -> str:
    if value == 0:
        return "0.00"
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.2f}"


def _show(metric: _Metric, value: float) -> str:
    return _percent(value) if metric.percent else _number(value)


def _difference(metric: _Metric, diff: float, *, signed: bool) -> str:
    """The size of a difference: percentage points for rates, score units otherwise."""
    if metric.percent:
        points = diff * 100
        if abs(points) < 0.05:
            return "less than 0.1 percentage points"
        text = f"{abs(points):.1f}"
        sign = ("+" if points > 0 else "-") if signed else ""
        return f"{sign}{text} percentage points"
    text = _number(abs(diff))
    sign = ("+" if diff > 0 else "-" if diff < 0 else "") if signed else ""
    return f"{sign}{text}"


def _name(names: Sequence[str], index: int) -> str:
    name = names[index] if 0 <= index < len(names) else None
    if isinstance(name, str) and name.strip():
        return " ".join(name.split())
    return "Control" if index == 0 else f"Arm {index}"


def _status_sentence(status: Any) -> str | None:
    if status == "running":
        return "The experiment is still running, so these results may still change as outcomes arrive."
    if status == "stopped":
        return "The experiment is stopped, so these results are final."
    if status == "draft":
        return "The experiment has not started yet (draft), so these figures are preliminary."
    return None


def reading(results: dict, names: list[str], *, alpha: float = 0.05, min_outcomes: int = MIN_OUTCOMES) -> list[str]:
    """Sentences comparing every arm with the control (arm 0), per metric (success rate, mean score).

    ``names[i]`` is the display name of arm i. ``alpha`` is the significance level used for
    "no detectable difference" versus "evidence that"; a comparison needs at least
    ``min_outcomes`` outcomes on both sides and a p-value.
    """
    sentences: list[str] = []
    status = _status_sentence(results.get("status"))
    if status:
        sentences.append(status)
    arms = [arm for arm in (results.get("arms") or []) if isinstance(arm, dict)]
    if not arms:
        sentences.append("There are no arms to compare yet.")
        return sentences
    if len(arms) == 1:
        sentences.append("There is only the control, so there is nothing to compare it with.")
        return sentences

    control = arms[0]
    control_name = _name(names, 0)
    control_n = _count(control.get("outcomes"))
    compared: list[float] = []  # the p-values of the comparisons actually made
    for index, arm in enumerate(arms[1:], start=1):
        name = _name(names, index)
        raw = arm.get("vs_control")
        versus: dict[str, Any] = raw if isinstance(raw, dict) else {}
        arm_n = _count(arm.get("outcomes"))
        for metric in _METRICS:
            lead = f"{metric.noun.capitalize()}, “{name}” vs. the control (“{control_name}”)"
            p = finite(versus.get(metric.p_key))
            diff = finite(versus.get(metric.diff_key))
            if p is not None:
                p = min(max(p, 0.0), 1.0)
            counts = f"{arm_n:,} outcomes in this arm, {control_n:,} in the control"
            if arm_n < min_outcomes or control_n < min_outcomes:
                sentences.append(
                    f"{lead}: not enough data yet to compare ({counts}; at least {min_outcomes:,} each are needed)."
                )
                continue
            if p is None:
                sentences.append(
                    f"{lead}: not enough data yet to compare ({counts}, but too few of them report "
                    f"a {'success' if metric.percent else 'score'} on one side or both)."
                )
                continue
            compared.append(p)
            p_text = format_p_value(p, alpha)
            if p >= alpha:
                observed = f"observed difference {_difference(metric, diff, signed=True)}, " if diff is not None else ""
                sentences.append(
                    f"{lead}: no detectable difference ({observed}{p_text}); this does not show that they are the "
                    f"same, only that any real difference is too small to detect with the data so far."
                )
                continue
            value = finite(arm.get(metric.value_key))
            base = finite(control.get(metric.value_key))
            figures = []
            if value is not None and base is not None:
                figures.append(f"{_show(metric, value)} vs. {_show(metric, base)}")
            figures.append(p_text)
            bounds = interval(arm.get(metric.interval_key))
            if bounds is not None:
                figures.append(f"this arm's 95% interval: {_show(metric, bounds[0])} to {_show(metric, bounds[1])}")
            detail = "; ".join(figures)
            claim = f"{lead}: evidence that this arm's {metric.noun}"
            if diff is None or diff == 0:
                sentences.append(f"{claim} differs from the control's ({detail}).")
            else:
                direction = "higher" if diff > 0 else "lower"
                sentences.append(
                    f"{claim} is {direction} than the control's, by "
                    f"{_difference(metric, diff, signed=False)} ({detail})."
                )

    if len(compared) > 1:
        strict = alpha / len(compared)
        detected = [p for p in compared if p < alpha]
        note = (
            f"{len(compared)} comparisons were made; with several comparisons, some results with "
            f"p < {alpha:g} can arise by chance alone (multiple comparisons)"
        )
        if detected:
            kept = sum(p < strict for p in detected)
            found = len(detected)
            threshold = f"the stricter Bonferroni threshold (p < {strict:.2g})"
            if found == 1:
                verdict = "passes" if kept else "does not pass"
                note += f"; the one difference found {verdict} {threshold}."
            elif kept == found:
                note += f"; all {found} differences found also pass {threshold}."
            elif kept == 0:
                note += f"; none of the {found} differences found passes {threshold}."
            else:
                note += f"; {kept} of the {found} differences found pass {threshold}."
        else:
            note += "."
        sentences.append(note)
    return sentences
