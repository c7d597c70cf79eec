"""A plain-language reading of an experiment's results, for people who do not read p-values,
and of a rollout's step, guardrails and status (:func:`guardrail_reading`, :func:`next_step`,
:func:`status_reading`).

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.api.console.charts import finite, interval

__all__ = [
    "duration",
    "format_p_value",
    "guardrail_limit",
    "guardrail_reading",
    "next_step",
    "reading",
    "status_reading",
]

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


# ------------------------------------------------------------------------------ rollouts


@dataclass(frozen=True)
class _Guarded:
    noun: str  # "success rate"
    worse: str  # the direction that is worse: "lower" for a success rate, "higher" for a latency
    better: str
    unit: str  # after the amount: "percentage points", "ms"
    scale: float  # a rate's differences are shown in points (x 100)


GUARDED = {
    "success_rate": _Guarded("success rate", "lower", "higher", "percentage points", 100.0),
    "score_mean": _Guarded("mean score", "lower", "higher", "", 1.0),
    "latency_ms_mean": _Guarded("mean latency", "higher", "lower", "ms", 1.0),
    "cost_usd_mean": _Guarded("mean cost", "higher", "lower", "USD", 1.0),
    "output_tokens_mean": _Guarded("mean output tokens", "higher", "lower", "tokens", 1.0),
}


def _guarded(metric: Any) -> _Guarded:
    return GUARDED.get(metric) or _Guarded(str(metric), "worse", "better", "", 1.0)


def _amount(guarded: _Guarded, value: float) -> str:
    """The size of a difference in the metric's units: "2 percentage points", "250 ms"."""
    size = abs(value) * guarded.scale
    text = f"{size:.3g}" if size < 1000 else f"{size:,.0f}"
    return f"{text} {guarded.unit}".strip()


def _side(guarded: _Guarded, value: float) -> str:
    """One oriented figure (below 0 is worse) in words: "3.1 percentage points lower"."""
    if value == 0:
        return "no different"
    return f"{_amount(guarded, value)} {guarded.worse if value < 0 else guarded.better}"


def guardrail_limit(guardrail: Mapping[str, Any]) -> str:
    """What a guardrail allows: "the variant's success rate may be at most 2 percentage
    points lower than the live config's"."""
    guarded = _guarded(guardrail.get("metric"))
    limit = finite(guardrail.get("max_degradation")) or 0.0
    if limit == 0:
        return f"the variant's {guarded.noun} may not be {guarded.worse} than the live config's at all"
    return (
        f"the variant's {guarded.noun} may be at most {_amount(guarded, limit)} {guarded.worse} than the live config's"
    )


def guardrail_reading(guardrail: Mapping[str, Any], *, min_outcomes: int) -> str:
    """A guardrail's figures (`progress.guardrails[i]`) in words: the estimate and its 95%
    confidence sequence in the metric's direction, the outcomes, and what it means."""
    guarded = _guarded(guardrail.get("metric"))
    counts = guardrail.get("n") or [0, 0]
    live_n, variant_n = _count(_at(counts, 0)), _count(_at(counts, 1))
    outcomes = f"{variant_n:,} outcomes of the variant and {live_n:,} of the live config carry it"
    estimate = finite(guardrail.get("estimate"))
    bounds = interval(guardrail.get("cs"))
    if estimate is None or bounds is None:
        return (
            f"Not enough outcomes to estimate yet ({outcomes}; each arm needs 2 in a step). It decides once each "
            f"arm has {min_outcomes:,}."
        )
    low, high = bounds
    sentence = (
        f"The variant's {guarded.noun} is {_side(guarded, estimate)} than the live config's"
        if estimate != 0
        else f"The variant's {guarded.noun} is no different from the live config's"
    )
    sentence += f" (95% confidence sequence: from {_side(guarded, low)} to {_side(guarded, high)}; {outcomes})."
    limit = finite(guardrail.get("max_degradation")) or 0.0
    if guardrail.get("breached"):
        return sentence + (
            f" Breached: even the most favourable end is more than the {_amount(guarded, limit)} allowed."
        )
    if min(live_n, variant_n) < min_outcomes:
        return sentence + f" It decides once each arm has {min_outcomes:,}."
    return (
        sentence + f" Within the limit: it cannot be shown to be more than {_amount(guarded, limit)} {guarded.worse}."
    )


def _at(items: Any, index: int) -> Any:
    return items[index] if isinstance(items, list | tuple) and 0 <= index < len(items) else None


def duration(seconds: float) -> str:
    """A wait in words: "45 seconds", "23 minutes", "1 hour 5 minutes", "2 days 3 hours"."""
    seconds = max(int(round(seconds)), 0)

    def unit(count: int, name: str) -> str:
        return f"{count} {name}{'' if count == 1 else 's'}"

    if seconds < 60:
        return unit(seconds, "second")
    minutes = (seconds + 59) // 60  # a wait is never shown shorter than it is
    if minutes < 60:
        return unit(minutes, "minute")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return unit(hours, "hour") + (f" {unit(minutes, 'minute')}" if minutes else "")
    days, hours = divmod(hours, 24)
    return unit(days, "day") + (f" {unit(hours, 'hour')}" if hours else "")


def _clock(value: Any) -> str:
    """An RFC 3339 instant as the console shows times: "2026-12-06 14:30:00 UTC"."""
    return f"{str(value)[:19].replace('T', ' ')} UTC"


def next_step(rollout: Mapping[str, Any], *, now: datetime, variant: str, environment: str) -> str:
    """When a live rollout takes its next step, and what holds it back, in words."""
    progress = rollout.get("progress")
    status = rollout.get("status")
    if status == "draft" or not isinstance(progress, Mapping):
        return "Not started: nothing is served yet."
    if status not in ("running", "paused"):
        return ""
    steps = rollout.get("steps") or []
    step = int(progress["step"])
    last = step + 1 >= len(steps)
    target = (
        f"completes: variant {variant} becomes the active variant in {environment}"
        if last
        else f"moves to step {step + 2} of {len(steps)} ({steps[step + 1]['percent']}% of subjects)"
    )
    due = progress.get("next_step_at")
    if status == "paused":
        ends = "ends" if due and datetime.fromisoformat(due) > now else "ended"
        return f"Paused: it does not advance until resumed (its step's hold {ends} at {_clock(due)})."
    guardrails = progress.get("guardrails") or []
    minimum = rollout.get("min_outcomes") or 0
    if progress.get("waiting_for") == "hold" and due:
        wait = (datetime.fromisoformat(due) - now).total_seconds()
        needs = (
            f", once every guardrail also has {minimum:,} outcomes in each arm and none is breached"
            if guardrails
            else ""
        )
        return f"It {target} in {duration(wait)} at the earliest ({_clock(due)}){needs}."
    if progress.get("waiting_for") == "outcomes":
        short = [
            f"{_guarded(g.get('metric')).noun}: {_count(_at(g.get('n'), 1)):,} of the variant's and "
            f"{_count(_at(g.get('n'), 0)):,} of the live config's"
            for g in guardrails
            if min(_count(_at(g.get("n"), 0)), _count(_at(g.get("n"), 1))) < minimum
        ]
        return (
            f"Its hold has passed; it {target} once every guardrail has {minimum:,} outcomes carrying its metric "
            f"in each arm (so far {'; '.join(short)})."
        )
    return (
        f"Its hold has passed and its guardrails allow it: it {target} at the scheduler's next tick (within seconds)."
    )


def status_reading(rollout: Mapping[str, Any], *, variant: str, live: str, environment: str) -> list[str]:
    """Why a rollout is where it is, in plain words: a rollback's breached guardrails and
    their figures, a pause on a changed config, a completion, a stop."""
    status, reason = rollout.get("status"), rollout.get("status_reason")
    progress = rollout.get("progress") if isinstance(rollout.get("progress"), Mapping) else {}
    when = _clock(rollout.get("stopped_at")) if rollout.get("stopped_at") else None
    if status == "rolled_back":
        breached = [g for g in (progress or {}).get("guardrails") or [] if g.get("breached")]
        out = [
            f"Rolled back{f' at {when}' if when else ''}: a guardrail was breached, so the rollout stopped at once. "
            f"Every request gets {live} again; variant {variant} was not activated."
        ]
        for guardrail in breached:
            guarded = _guarded(guardrail.get("metric"))
            counts = guardrail.get("n") or [0, 0]
            estimate = finite(guardrail.get("estimate"))
            bounds = interval(guardrail.get("cs"))
            limit = finite(guardrail.get("max_degradation")) or 0.0
            if estimate is None or bounds is None:
                continue
            out.append(
                f"Its {guarded.noun} got worse by more than the {_amount(guarded, limit)} allowed: over "
                f"{_count(_at(counts, 1)):,} outcomes of the variant and {_count(_at(counts, 0)):,} of the live "
                f"config, the variant's {guarded.noun} was {_side(guarded, estimate)}, and even the most favourable "
                f"end of its 95% confidence sequence ({_side(guarded, bounds[1])}) is beyond the limit."
            )
        if len(out) == 1 and reason:
            out.append(f"The reason recorded: {reason}")
        return out
    if status == "paused" and reason == "config_changed":
        return [
            f"Paused instead of completing: variant {variant} no longer resolves as it did at the start (the base "
            f"config changed under it), so it was not activated: that would ship a config this rollout never "
            f"tested. Stop it and roll the variant out again to test it as it is now; resumed, it pauses again at "
            f"completion unless the config is back as it was."
        ]
    if status == "paused":
        return [
            "Paused: it keeps serving its step and its guardrails keep watching (a breach still rolls it back), "
            "but it does not advance until resumed."
        ]
    if status == "completed":
        return [f"Completed{f' at {when}' if when else ''}: variant {variant} is the active variant in {environment}."]
    if status == "stopped":
        return [
            f"Stopped{f' at {when}' if when else ''}: every request gets {live} again; variant {variant} was not "
            "activated."
        ]
    return [f"The reason recorded: {reason}"] if reason else []
