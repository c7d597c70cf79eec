"""The plain-language reading of experiment results: it never claims more than the figures support."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.console import reading as words_of
from services.api.console.reading import format_p_value, reading
from tests.console.test_charts import results_objects

NAMES = ["Control: base", "Arm 1: concise", "Arm 2: friendly"]
OVERCLAIMS = re.compile(r"significan|better|worse|prove|equal|identical|same as", re.IGNORECASE)


def arm(
    index,
    outcomes=200,
    *,
    success_rate=0.62,
    success_rate_ci=(0.55, 0.69),
    score_mean=3.9,
    score_mean_ci=(3.7, 4.1),
    success_rate_diff=None,
    success_p_value=None,
    score_mean_diff=None,
    score_p_value=None,
):
    return {
        "arm": index,
        "variant_id": None if index == 0 else f"var_{index}",
        "weight": 1,
        "outcomes": outcomes,
        "input_tokens": 1000,
        "output_tokens": 100,
        "mean_input_tokens": 10.0,
        "mean_output_tokens": 1.0,
        "latency_ms_p50": 800.0,
        "latency_ms_p95": 1900.0,
        "success_rate": success_rate,
        "success_rate_ci": list(success_rate_ci) if success_rate_ci else None,
        "score_mean": score_mean,
        "score_mean_ci": list(score_mean_ci) if score_mean_ci else None,
        "vs_control": None
        if index == 0
        else {
            "success_rate_diff": success_rate_diff,
            "success_p_value": success_p_value,
            "score_mean_diff": score_mean_diff,
            "score_p_value": score_p_value,
        },
    }


def results(*arms, status="running"):
    return {"object": "experiment_results", "experiment_id": "exp_1", "status": status, "arms": list(arms)}


def about(sentences, metric, name="Arm 1: concise"):
    """The one sentence on this arm and metric."""
    (found,) = [s for s in sentences if s.startswith(f"{metric}, “{name}”")]
    return found


# --- p-values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.032, "p = 0.032"),
        (0.0004, "p < 0.001"),
        (0.0, "p < 0.001"),
        (0.001, "p = 0.001"),
        (0.19, "p = 0.190"),
        (1.0, "p = 1.000"),
        (0.04996, "p = 0.04996"),
        (0.0500, "p = 0.050"),
    ],
)
def test_format_p_value(p, expected):
    assert format_p_value(p) == expected


def test_a_p_value_just_under_alpha_is_never_printed_as_alpha():
    assert format_p_value(0.0496) == "p = 0.0496"
    assert format_p_value(0.0096, alpha=0.01) == "p = 0.0096"


# --- status ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "words"),
    [("running", "may still change"), ("stopped", "final"), ("draft", "not started")],
)
def test_status_is_stated_first(status, words):
    out = reading(results(arm(0), arm(1), status=status), NAMES)
    assert words in out[0]


# --- not enough data ---------------------------------------------------------------------------


def test_too_few_outcomes_is_not_enough_data_with_the_counts():
    out = reading(
        results(
            arm(0, outcomes=120),
            arm(
                1, outcomes=12, success_rate_diff=0.3, success_p_value=0.001, score_mean_diff=1.0, score_p_value=0.0001
            ),
        ),
        NAMES,
    )
    for metric in ("Success rate", "Mean score"):
        sentence = about(out, metric)
        assert "not enough data yet to compare" in sentence
        assert "12 outcomes in this arm" in sentence and "120 in the control" in sentence
        assert "evidence" not in sentence and "higher" not in sentence and "p <" not in sentence
    assert not any("multiple comparisons" in s for s in out)


def test_a_small_control_is_not_enough_data_either():
    out = reading(
        results(arm(0, outcomes=29), arm(1, outcomes=500, success_rate_diff=0.3, success_p_value=0.01)), NAMES
    )
    assert "not enough data" in about(out, "Success rate")
    assert "29 in the control" in about(out, "Success rate")


def test_a_missing_p_value_is_not_enough_data():
    out = reading(results(arm(0), arm(1, success_rate_diff=0.1, success_p_value=None)), NAMES)
    sentence = about(out, "Success rate")
    assert "not enough data yet" in sentence and "200 outcomes in this arm" in sentence


def test_the_threshold_is_a_parameter():
    data = results(arm(0, outcomes=40), arm(1, outcomes=40, success_rate_diff=0.1, success_p_value=0.5))
    assert "not enough data" not in about(reading(data, NAMES), "Success rate")
    assert "not enough data" in about(reading(data, NAMES, min_outcomes=50), "Success rate")


# --- no detectable difference -------------------------------------------------------------------


def test_p_above_alpha_is_no_detectable_difference_and_not_sameness():
    out = reading(
        results(
            arm(0),
            arm(
                1,
                success_rate=0.7,
                success_rate_diff=0.08,
                success_p_value=0.19,
                score_mean_diff=-0.05,
                score_p_value=0.5,
            ),
        ),
        NAMES,
    )
    success = about(out, "Success rate")
    assert "no detectable difference" in success
    assert "+8.0 percentage points" in success and "p = 0.190" in success
    assert "does not show that they are the same" in success
    score = about(out, "Mean score")
    assert "no detectable difference" in score and "-0.05" in score and "p = 0.500" in score
    for sentence in out:
        assert not OVERCLAIMS.search(sentence.replace("does not show that they are the same", "")), sentence
        assert "higher" not in sentence and "lower" not in sentence and "evidence" not in sentence


def test_p_equal_to_alpha_is_not_a_detection():
    out = reading(results(arm(0), arm(1, success_rate_diff=0.1, success_p_value=0.05)), NAMES)
    assert "no detectable difference" in about(out, "Success rate")


def test_alpha_is_a_parameter():
    data = results(arm(0), arm(1, success_rate_diff=0.1, success_p_value=0.03))
    assert "evidence that" in about(reading(data, NAMES), "Success rate")
    assert "no detectable difference" in about(reading(data, NAMES, alpha=0.01), "Success rate")


# --- evidence of a difference -------------------------------------------------------------------


def test_p_below_alpha_says_higher_for_a_positive_difference():
    out = reading(
        results(
            arm(0),
            arm(1, success_rate=0.70, success_rate_ci=(0.61, 0.78), success_rate_diff=0.08, success_p_value=0.032),
        ),
        NAMES,
    )
    sentence = about(out, "Success rate")
    assert "evidence that this arm's success rate is higher than the control's" in sentence
    assert "by 8.0 percentage points" in sentence
    assert "70.0% vs. 62.0%" in sentence
    assert "p = 0.032" in sentence
    assert "95% interval: 61.0% to 78.0%" in sentence
    assert "lower" not in sentence and not OVERCLAIMS.search(sentence)


def test_p_below_alpha_says_lower_for_a_negative_difference():
    out = reading(
        results(arm(0), arm(1, score_mean=3.6, score_mean_ci=(3.45, 3.75), score_mean_diff=-0.3, score_p_value=0.0004)),
        NAMES,
    )
    sentence = about(out, "Mean score")
    assert "evidence that this arm's mean score is lower than the control's, by 0.30" in sentence
    assert "p < 0.001" in sentence and "3.60 vs. 3.90" in sentence and "3.45 to 3.75" in sentence
    assert "higher" not in sentence and not OVERCLAIMS.search(sentence)


def test_a_tiny_but_detected_rate_difference_is_not_printed_as_zero():
    out = reading(
        results(arm(0, outcomes=10**7), arm(1, outcomes=10**7, success_rate_diff=0.0003, success_p_value=0.0001)), NAMES
    )
    assert "higher than the control's, by less than 0.1 percentage points" in about(out, "Success rate")


def test_a_detection_without_a_difference_only_says_it_differs():
    out = reading(results(arm(0), arm(1, success_rate_diff=None, success_p_value=0.01)), NAMES)
    sentence = about(out, "Success rate")
    assert "differs from the control's" in sentence and "higher" not in sentence and "lower" not in sentence


# --- multiple comparisons -----------------------------------------------------------------------


def test_several_comparisons_add_a_multiple_comparisons_note():
    out = reading(
        results(
            arm(0),
            arm(1, success_rate_diff=0.08, success_p_value=0.03, score_mean_diff=0.1, score_p_value=0.6),
            arm(2, success_rate_diff=-0.1, success_p_value=0.004),
        ),
        NAMES,
    )
    (note,) = [s for s in out if "multiple comparisons" in s]
    assert note == out[-1]
    assert "3 comparisons" in note and "by chance" in note
    assert "p < 0.017" in note and "1 of the 2 differences found pass" in note
    assert "lower" in about(out, "Success rate", "Arm 2: friendly")


def test_several_comparisons_without_detections_still_note_it_without_overclaiming():
    out = reading(
        results(arm(0), arm(1, success_rate_diff=0.01, success_p_value=0.7, score_mean_diff=0.1, score_p_value=0.4)),
        NAMES,
    )
    (note,) = [s for s in out if "multiple comparisons" in s]
    assert "2 comparisons" in note and not OVERCLAIMS.search(note)


def test_one_comparison_has_no_multiple_comparisons_note():
    out = reading(results(arm(0), arm(1, success_rate_diff=0.08, success_p_value=0.03)), NAMES)
    assert not any("multiple comparisons" in s for s in out)


# --- shapes ------------------------------------------------------------------------------------


def test_no_arms_or_only_the_control():
    assert reading({"status": "running", "arms": []}, []) == [
        "The experiment is still running, so these results may still change as outcomes arrive.",
        "There are no arms to compare yet.",
    ]
    assert "nothing to compare" in reading(results(arm(0), status="stopped"), NAMES)[-1]
    assert reading({}, []) == ["There are no arms to compare yet."]


def test_names_fall_back_and_stay_plain_text():
    out = reading(results(arm(0), arm(1, success_rate_diff=0.1, success_p_value=0.5)), [])
    assert about(out, "Success rate", "Arm 1").startswith("Success rate, “Arm 1” vs. the control (“Control”)")
    out = reading(results(arm(0), arm(1, success_rate_diff=0.1, success_p_value=0.5)), ["C", "<b>&amp;"])
    assert "“<b>&amp;”" in out[1]  # plain text: escaping is the page's job


def test_example_reading():
    out = reading(
        results(
            arm(0, outcomes=120),
            arm(
                1,
                outcomes=118,
                success_rate=0.70,
                success_rate_ci=(0.61, 0.78),
                success_rate_diff=0.08,
                success_p_value=0.19,
                score_mean=4.1,
                score_mean_ci=(3.95, 4.25),
                score_mean_diff=0.2,
                score_p_value=0.04,
            ),
        ),
        NAMES,
    )
    assert out == [
        "The experiment is still running, so these results may still change as outcomes arrive.",
        "Success rate, “Arm 1: concise” vs. the control (“Control: base”): no detectable difference (observed "
        "difference +8.0 percentage points, p = 0.190); this does not show that they are the same, only that any "
        "real difference is too small to detect with the data so far.",
        "Mean score, “Arm 1: concise” vs. the control (“Control: base”): evidence that this arm's mean score is "
        "higher than the control's, by 0.20 (4.10 vs. 3.90; p = 0.040; this arm's 95% interval: 3.95 to 4.25).",
        "2 comparisons were made; with several comparisons, some results with p < 0.05 can arise by chance alone "
        "(multiple comparisons); the one difference found does not pass the stricter Bonferroni threshold "
        "(p < 0.025).",
    ]


# --- property: never crashes, never claims more than the p-values --------------------------------


@settings(max_examples=300, deadline=None)
@given(
    data=results_objects(), names=st.lists(st.text(max_size=30), max_size=6), alpha=st.sampled_from([0.05, 0.01, 0.1])
)
def test_random_results_read_without_overclaiming(data, names, alpha):
    out = reading(data, names, alpha=alpha)
    assert out and all(isinstance(s, str) and s for s in out)
    arms = data["arms"]
    control_n = arms[0]["outcomes"]
    expected_detections = 0
    for current in arms[1:]:
        versus = current["vs_control"] or {}
        for key in ("success_p_value", "score_p_value"):
            p = versus.get(key)
            if p is not None and p < alpha and current["outcomes"] >= 30 and control_n >= 30:
                expected_detections += 1
    assert sum("evidence that" in s for s in out) == expected_detections
    for sentence in out:
        checked = sentence.replace("does not show that they are the same", "")
        for name in names:  # random names may contain any word ("higher", say)
            checked = checked.replace(" ".join(name.split()), "")
        if "no detectable difference" in sentence or "not enough data" in sentence:
            assert "evidence" not in checked and "higher" not in checked and "lower" not in checked
        assert not OVERCLAIMS.search(checked), sentence
        assert "nan" not in checked.lower().split() and "inf" not in checked.lower().split()


# --- rollouts (issue 20) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 seconds"),
        (45, "45 seconds"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (1800, "30 minutes"),
        (3900, "1 hour 5 minutes"),
        (7200, "2 hours"),
        (183600, "2 days 3 hours"),
        (-5, "0 seconds"),
    ],
)
def test_duration(seconds, words):
    assert words_of.duration(seconds) == words


def test_a_guardrail_reads_in_its_metric_s_direction():
    latency = {
        "metric": "latency_ms_mean",
        "max_degradation": 250,
        "estimate": -300.0,
        "cs": [-420.0, -180.0],
        "n": [500, 480],
        "breached": False,
    }
    assert words_of.guardrail_limit(latency) == (
        "the variant's mean latency may be at most 250 ms higher than the live config's"
    )
    words = words_of.guardrail_reading(latency, min_outcomes=100)
    assert words.startswith("The variant's mean latency is 300 ms higher than the live config's")
    assert "from 420 ms higher to 180 ms higher" in words and "480 outcomes of the variant and 500" in words
    assert "Within the limit" in words
    rate = {
        "metric": "success_rate",
        "max_degradation": 0.02,
        "estimate": 0.004,
        "cs": [-0.031, 0.039],
        "n": [40, 30],
        "breached": False,
    }
    words = words_of.guardrail_reading(rate, min_outcomes=100)
    assert "0.4 percentage points higher" in words and "from 3.1 percentage points lower" in words
    assert words.endswith("It decides once each arm has 100.")
    none_yet = {**rate, "estimate": None, "cs": None, "n": [1, 0]}
    assert words_of.guardrail_reading(none_yet, min_outcomes=100).startswith("Not enough outcomes to estimate yet")


def test_a_rollback_says_which_guardrail_and_its_figures_in_words():
    rollout = {
        "status": "rolled_back",
        "stopped_at": "2026-12-06T10:05:00.000000Z",
        "status_reason": "success_rate got worse by more than 0.02: ...",
        "progress": {
            "guardrails": [
                {
                    "metric": "success_rate",
                    "max_degradation": 0.02,
                    "estimate": -0.5,
                    "cs": [-0.57, -0.43],
                    "n": [400, 400],
                    "breached": True,
                },
                {
                    "metric": "latency_ms_mean",
                    "max_degradation": 250,
                    "estimate": 0.0,
                    "cs": [-1.0, 1.0],
                    "n": [400, 400],
                    "breached": False,
                },
            ]
        },
    }
    first, second = words_of.status_reading(rollout, variant="concise", live="variant current", environment="prod")
    assert first.startswith("Rolled back at 2026-12-06 10:05:00 UTC: a guardrail was breached")
    assert "Every request gets variant current again; variant concise was not activated." in first
    assert second == (
        "Its success rate got worse by more than the 2 percentage points allowed: over 400 outcomes of the variant "
        "and 400 of the live config, the variant's success rate was 50 percentage points lower, and even the most "
        "favourable end of its 95% confidence sequence (43 percentage points lower) is beyond the limit."
    )
    changed = words_of.status_reading(
        {"status": "paused", "status_reason": "config_changed"}, variant="concise", live="x", environment="prod"
    )
    assert "no longer resolves as it did at the start" in changed[0]
