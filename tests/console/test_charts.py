"""The console's SVG charts: well-formed, escaped, accessible, honest about missing data."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.console import charts
from services.api.console.charts import (
    PLOT_X0,
    PLOT_X1,
    LinearScale,
    bar_chart,
    format_number,
    format_percent,
    interval_chart,
    nice_axis,
    results_charts,
    usage_chart,
)

SVG = "{http://www.w3.org/2000/svg}"
NUMERIC = {"x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "width", "height", "font-size", "stroke-width"}
EVIL = "<script>&x"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def all_text(root: ET.Element) -> str:
    return " ".join(t for t in root.itertext())


def check_document(svg: str, *, words: bool = True) -> ET.Element:
    """What every chart must be: XML, scalable, accessible, CSP-friendly, no NaN or infinity.

    ``words``: also check that no text says nan/inf (off when the labels are random text).
    """
    root = parse(svg)
    if words:
        assert not re.search(r"\b(nan|inf|infinity)\b", svg, re.IGNORECASE)
    assert root.get("width") == "100%"
    view = [float(v) for v in root.get("viewBox").split()]
    assert len(view) == 4 and all(math.isfinite(v) for v in view) and view[2] > 0 and view[3] > 0
    assert root.get("role") == "img"
    ids = root.get("aria-labelledby").split()
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert ids == [title.get("id"), desc.get("id")]
    assert (title.text or "").strip() and (desc.text or "").strip()
    for element in root.iter():
        assert "style" not in element.attrib
        assert element.tag not in (f"{SVG}style", f"{SVG}script", f"{SVG}foreignObject", f"{SVG}image")
        for name, value in element.attrib.items():
            assert "url(" not in value and "href" not in name
            if name in NUMERIC and element is not root:
                assert math.isfinite(float(value)), (name, value)
            if name in ("points", "viewBox"):
                assert all(math.isfinite(float(v)) for v in re.split(r"[ ,]+", value.strip()))
    return root


def drawn_text(root: ET.Element) -> list[str]:
    """The words drawn on the chart (its <text> elements), not the <title>/<desc> summary."""
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text")]


def elements(root: ET.Element, tag: str, cls: str | None = None) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if cls is None or e.get("class") == cls]


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (50000, "", "50,000"),
        (1900.0, "ms", "1,900 ms"),
        (416.7, "tokens", "417 tokens"),
        (75.0, "", "75.0"),
        (3.9, "", "3.90"),
        (1_234_567, "", "1.23M"),
        (48_000_000, "tokens", "48M tokens"),
        (5e9, "", "5B"),
        (2.5e12, "", "2.5T"),
        (0, "", "0.00"),
        (-0.0, "", "0.00"),
        (None, "ms", "no data"),
        (float("nan"), "", "no data"),
        (float("inf"), "", "no data"),
        (True, "", "no data"),
    ],
)
def test_format_number(value, unit, expected):
    assert format_number(value, unit) == expected


def test_format_percent():
    assert format_percent(0.625) == "62.5%"
    assert format_percent(0) == "0.0%"
    assert format_percent(-0.00001) == "0.0%"
    assert format_percent(None) == "no data"


@pytest.mark.parametrize(
    ("values", "lo", "hi"),
    [
        ([0.2, 0.9], 0.0, 1.0),
        ([3.7, 4.1], None, None),
        ([820, 1900], None, None),
        ([], None, None),
        ([5.0], None, None),
        ([-3, 7], None, None),
        ([1e14, 3e14], None, None),
        ([0.0, 0.0], None, None),
    ],
)
def test_nice_axis_covers_the_data_with_ordered_ticks(values, lo, hi):
    low, high, ticks = nice_axis(values, lo=lo, hi=hi)
    assert low < high
    assert all(low <= v <= high for v in values)
    assert ticks == sorted(ticks) and len(ticks) >= 2
    assert all(low - 1e-9 * abs(high - low) <= t <= high + 1e-9 * abs(high - low) for t in ticks)
    if lo is not None:
        assert (low, high) == (lo, hi)


def test_scale_maps_and_clips():
    scale = LinearScale(0.0, 1.0)
    assert scale(0.0) == PLOT_X0 and scale(1.0) == PLOT_X1
    assert scale(0.5) == pytest.approx((PLOT_X0 + PLOT_X1) / 2)
    assert scale(-3) == PLOT_X0 and scale(7) == PLOT_X1


# --- interval chart ----------------------------------------------------------------------------


def rate_chart(**kwargs):
    return interval_chart(
        "Success rate",
        ["Control: base", "Arm 1", "Arm 2"],
        [0.62, 0.30, None],
        [(0.53, 0.70), (0.21, 0.41), None],
        lo=0.0,
        hi=1.0,
        percent=True,
        **kwargs,
    )


def test_interval_chart_is_an_accessible_document():
    root = check_document(rate_chart())
    assert root.find(f"{SVG}title").text == "Success rate"
    desc = root.find(f"{SVG}desc").text
    assert "Control: base: 62.0%, 95% interval 53.0% to 70.0%" in desc
    assert "Arm 2: no data" in desc
    text = all_text(root)
    for expected in ("Control: base", "Arm 1", "Arm 2", "62.0% (53.0%–70.0%)", "0%", "40%", "100%"):
        assert expected in text


def test_error_bars_sit_where_the_scale_puts_them():
    root = check_document(rate_chart())
    scale = LinearScale(0.0, 1.0)
    bars = elements(root, "line", "ci")
    points = elements(root, "circle", "point")
    assert len(bars) == 2 and len(points) == 2  # the None row has neither
    for bar, point, (lo, value, hi) in zip(bars, points, [(0.53, 0.62, 0.70), (0.21, 0.30, 0.41)], strict=True):
        x1, x2, cx = float(bar.get("x1")), float(bar.get("x2")), float(point.get("cx"))
        assert x1 < cx < x2
        assert x1 == pytest.approx(scale(lo), abs=0.06)
        assert x2 == pytest.approx(scale(hi), abs=0.06)
        assert cx == pytest.approx(scale(value), abs=0.06)
        assert float(bar.get("y1")) == float(point.get("cy"))
    # the higher value is further right; rows go down in order
    assert float(points[0].get("cx")) > float(points[1].get("cx"))
    assert float(points[0].get("cy")) < float(points[1].get("cy"))


def test_none_value_is_drawn_as_no_data():
    root = check_document(interval_chart("Score", ["a", "b"], [None, None], [(1, 2), None]))
    assert drawn_text(root).count("no data") == 2
    assert not elements(root, "circle") and not elements(root, "line", "ci")


def test_reversed_interval_is_put_in_order():
    root = check_document(interval_chart("Score", ["a"], [3.0], [(4.0, 2.0)]))
    (bar,) = elements(root, "line", "ci")
    assert float(bar.get("x1")) < float(bar.get("x2"))


def test_rate_intervals_beyond_the_axis_are_clipped_with_arrowheads():
    root = check_document(interval_chart("Rate", ["a"], [0.5], [(-0.2, 1.3)], lo=0.0, hi=1.0, percent=True))
    (bar,) = elements(root, "line", "ci")
    assert float(bar.get("x1")) == PLOT_X0 and float(bar.get("x2")) == PLOT_X1
    assert len(elements(root, "polygon")) == 2
    root = check_document(interval_chart("Rate", ["a"], [0.5], [(0.4, 0.6)], lo=0.0, hi=1.0, percent=True))
    assert not elements(root, "polygon")


def test_reference_line_marks_the_control():
    root = check_document(rate_chart(reference=0.62))
    (line,) = elements(root, "line", "reference")
    assert float(line.get("x1")) == pytest.approx(LinearScale(0.0, 1.0)(0.62), abs=0.06)
    assert "Dashed line: control." in all_text(root)


def test_interval_chart_edge_cases():
    check_document(interval_chart("Empty", [], [], []))
    root = check_document(interval_chart("One", ["only"], [4.2], [None]))
    assert len(elements(root, "circle", "point")) == 1
    root = check_document(interval_chart("Nulls", ["a", "b", "c"], [None] * 3, [None] * 3))
    assert drawn_text(root).count("no data") == 3
    # lists shorter than the labels, NaN and infinity count as no data
    root = check_document(interval_chart("Short", ["a", "b", "c"], [float("nan"), float("inf")], []))
    assert drawn_text(root).count("no data") == 3
    # one value only, huge values
    check_document(interval_chart("Same", ["a", "b"], [7.0, 7.0], [(7.0, 7.0), None]))
    root = check_document(interval_chart("Negative", ["a"], [-0.12], [(-0.3, 0.06)]))
    assert "-0.12 (-0.30 to 0.06)" in drawn_text(root)
    root = check_document(interval_chart("Huge", ["a"], [3e12], [(1e12, 5e12)]))
    assert "3T (1T–5T)" in all_text(root)


# --- escaping ----------------------------------------------------------------------------------


def test_every_text_is_escaped():
    evil_names = [f"Control {EVIL}", f'Arm 1 "{EVIL}"']
    svgs = [
        interval_chart(f"Title {EVIL}", evil_names, [0.5, None], [None, None], unit=EVIL, percent=True),
        bar_chart(f"Title {EVIL}", evil_names, {f"s {EVIL}": [1, 2]}, unit=EVIL),
        usage_chart(
            {
                "by_variant": [
                    {"variant_id": None, "input_tokens": 1, "output_tokens": 2, "outcomes": 3},
                    {"variant_id": "var_<i>", "input_tokens": 1, "output_tokens": 2, "outcomes": 3},
                ]
            },
            {None: f"Base {EVIL}"},
        ),
        *(svg for _, svg in results_charts({"arms": [{}, {}]}, evil_names)),
    ]
    for svg in svgs:
        assert "<script" not in svg and "&x" not in svg.replace("&amp;", "")
        root = check_document(svg)
        assert EVIL in all_text(root)
        assert not elements(root, "script")


def test_characters_xml_forbids_are_dropped():
    label = "a\x00b\x07c\x1b\ud800d"
    root = check_document(interval_chart("t\x0c", [label], [1.0], [None]))
    assert "abcd" in all_text(root)


def test_long_labels_are_shortened_with_the_full_label_as_tooltip():
    label = "A variant with a really very long display name"
    root = check_document(bar_chart("t", [label], {"p50": [1.0]}))
    text = all_text(root)
    assert "A variant with a really…" in text
    assert label in [e.text for e in elements(root, "title")]


# --- bar chart ---------------------------------------------------------------------------------


def test_bar_chart_groups_series_with_legend_and_values():
    root = check_document(
        bar_chart("Latency", ["Control", "Arm 1"], {"p50": [820.0, 700.0], "p95": [1900.0, None]}, unit="ms")
    )
    text = all_text(root)
    for expected in ("p50", "p95", "p50: 820 ms", "p95: 1,900 ms", "p50: 700 ms", "p95: no data", "ms"):
        assert expected in text
    bars = elements(root, "rect", "bar")
    assert len(bars) == 3
    widths = [float(b.get("width")) for b in bars]
    assert widths[1] > widths[0] > widths[2] > 0  # 1900 > 820 > 700
    zero = {float(b.get("x")) for b in bars}
    assert zero == {PLOT_X0}  # all bars start at the zero line
    assert widths[1] / widths[0] == pytest.approx(1900 / 820, rel=0.01)


def test_bar_chart_edge_cases():
    check_document(bar_chart("Empty", [], {"p50": []}))
    check_document(bar_chart("No series", ["a"], {}))
    root = check_document(bar_chart("Zeros", ["a", "b"], {"x": [0, 0]}))
    assert all(float(b.get("width")) == 0 for b in elements(root, "rect", "bar"))
    root = check_document(bar_chart("Nulls", ["a"], {"x": [None], "y": [None]}))
    assert drawn_text(root).count("no data") == 2
    root = check_document(bar_chart("Huge", ["a", "b"], {"tokens": [5e9, 2.5e9]}, unit="tokens"))
    text = all_text(root)
    assert "5B tokens" in text and "2.5B tokens" in text and "4B" in drawn_text(root)  # ticks in B
    root = check_document(bar_chart("Negative", ["a", "b"], {"d": [-5.0, 10.0]}))
    bars = elements(root, "rect", "bar")
    assert float(bars[0].get("x")) + float(bars[0].get("width")) == pytest.approx(float(bars[1].get("x")), abs=0.1)


# --- results and usage -------------------------------------------------------------------------


def arm(index, outcomes=120, **figures):
    base = {
        "arm": index,
        "variant_id": None if index == 0 else f"var_{index}",
        "weight": 1,
        "outcomes": outcomes,
        "input_tokens": 50000,
        "output_tokens": 9000,
        "mean_input_tokens": 416.7,
        "mean_output_tokens": 75.0,
        "latency_ms_p50": 820.0,
        "latency_ms_p95": 1900.0,
        "success_rate": 0.62,
        "success_rate_ci": [0.53, 0.70],
        "score_mean": 3.9,
        "score_mean_ci": [3.7, 4.1],
        "vs_control": None
        if index == 0
        else {"success_rate_diff": 0.0, "success_p_value": 1.0, "score_mean_diff": 0.0, "score_p_value": 1.0},
    }
    return {**base, **figures}


def test_results_charts_gives_four_charts_in_order():
    results = {
        "object": "experiment_results",
        "status": "running",
        "arms": [arm(0), arm(1, success_rate=0.7, success_rate_ci=[0.61, 0.78])],
    }
    out = results_charts(results, ["Control: base", "Arm 1: concise"])
    assert [heading for heading, _ in out] == [
        "Success rate (95% interval)",
        "Mean score (95% interval)",
        "Latency (p50 and p95, ms)",
        "Tokens per run (mean input and output)",
    ]
    roots = [check_document(svg) for _, svg in out]
    for root in roots:
        assert "Control: base" in all_text(root) and "Arm 1: concise" in all_text(root)
    assert "70.0% (61.0%–78.0%)" in all_text(roots[0])
    assert "3.90 (3.70–4.10)" in all_text(roots[1])
    assert "p95: 1,900 ms" in all_text(roots[2])
    assert "input: 417 tokens" in all_text(roots[3])
    assert len({root.find(f"{SVG}title").get("id") for root in roots}) == 4  # ids do not clash on one page


def test_results_charts_edge_cases():
    for results in (
        {"arms": []},
        {},
        {"arms": [arm(0)]},
        {
            "arms": [
                arm(
                    0,
                    outcomes=0,
                    **dict.fromkeys(
                        [
                            "mean_input_tokens",
                            "mean_output_tokens",
                            "latency_ms_p50",
                            "latency_ms_p95",
                            "success_rate",
                            "success_rate_ci",
                            "score_mean",
                            "score_mean_ci",
                        ]
                    ),
                ),
                arm(1, outcomes=0),
            ]
        },
    ):
        out = results_charts(results, [])
        assert len(out) == 4
        for _, svg in out:
            check_document(svg)
    # missing names fall back to Control / Arm i
    (_, svg), *_ = results_charts({"arms": [arm(0), arm(1)]}, [])
    assert "Control" in all_text(parse(svg)) and "Arm 1" in all_text(parse(svg))


def test_usage_chart_shows_tokens_and_runs_per_variant():
    usage = {
        "object": "usage",
        "input_tokens": 40_050_000,
        "output_tokens": 8_009_000,
        "total_tokens": 48_059_000,
        "outcomes": 238,
        "by_variant": [
            {"variant_id": None, "input_tokens": 50000, "output_tokens": 9000, "total_tokens": 59000, "outcomes": 120},
            {
                "variant_id": "var_1",
                "input_tokens": 40_000_000,
                "output_tokens": 8_000_000,
                "total_tokens": 48_000_000,
                "outcomes": 118,
            },
            {"variant_id": "var_gone", "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "outcomes": 0},
        ],
    }
    root = check_document(usage_chart(usage, {None: "Base config", "var_1": "concise"}))
    text = all_text(root)
    for expected in (
        "Base config",
        "concise",
        "var_gone",
        "59,000 tokens",
        "48M tokens",
        "120 runs",
        "0 runs",
        "input tokens",
        "output tokens",
        "Tokens",
        "Runs",
    ):
        assert expected in text
    desc = root.find(f"{SVG}desc").text
    assert "48.1M tokens" in desc and "238 runs" in desc
    # input and output are stacked: the output segment starts where the input one ends
    bars = elements(root, "rect", "bar")
    big_in, big_out = bars[2], bars[3]
    assert float(big_in.get("x")) + float(big_in.get("width")) == pytest.approx(float(big_out.get("x")), abs=0.1)
    assert float(big_in.get("width")) / float(big_out.get("width")) == pytest.approx(5, rel=0.01)


def test_usage_chart_edge_cases():
    root = check_document(
        usage_chart(
            {
                "object": "usage",
                "input_tokens": 0,
                "output_tokens": 0,
                "total_tokens": 0,
                "outcomes": 0,
                "by_variant": [],
            },
            {},
        )
    )
    assert "No usage recorded yet." in all_text(root)
    root = check_document(
        usage_chart(
            {
                "by_variant": [
                    {"variant_id": None, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "outcomes": 0}
                ]
            },
            {},
        )
    )
    assert "Base config" in all_text(root) and "0 runs" in all_text(root)


# --- colours -----------------------------------------------------------------------------------


def contrast_on_white(colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    return 1.05 / (luminance + 0.05)


def test_colours_have_enough_contrast_on_white():
    for text in (charts.TEXT, charts.MUTED, charts.REFERENCE):
        assert contrast_on_white(text) >= 4.5, text
    for mark in (charts.POINT, *charts.PALETTE):
        assert contrast_on_white(mark) >= 3.0, mark


# --- property: random results never crash and always give well-formed SVG -----------------------

figures = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**18), 10**18)
rates = st.none() | st.floats(0, 1)
intervals = st.none() | st.tuples(st.floats(-1e16, 1e16), st.floats(-1e16, 1e16)).map(list)
p_values = st.none() | st.floats(0, 1)


@st.composite
def results_objects(draw):
    count = draw(st.integers(1, 5))
    arms = []
    for index in range(count):
        arms.append(
            {
                "arm": index,
                "variant_id": None if index == 0 else f"var_{index}",
                "weight": draw(st.integers(1, 10000)),
                "outcomes": draw(st.integers(0, 10**7)),
                "input_tokens": draw(st.integers(0, 10**13)),
                "output_tokens": draw(st.integers(0, 10**13)),
                "mean_input_tokens": draw(figures),
                "mean_output_tokens": draw(figures),
                "latency_ms_p50": draw(figures),
                "latency_ms_p95": draw(figures),
                "success_rate": draw(rates),
                "success_rate_ci": draw(intervals),
                "score_mean": draw(figures),
                "score_mean_ci": draw(intervals),
                "vs_control": None
                if index == 0
                else draw(
                    st.none()
                    | st.fixed_dictionaries(
                        {
                            "success_rate_diff": st.none() | st.floats(-1, 1),
                            "success_p_value": p_values,
                            "score_mean_diff": figures,
                            "score_p_value": p_values,
                        }
                    )
                ),
            }
        )
    status = draw(st.sampled_from(["draft", "running", "stopped"]))
    return {"object": "experiment_results", "experiment_id": "exp_x", "status": status, "arms": arms}


names_lists = st.lists(st.text(max_size=40), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results=results_objects(), names=names_lists)
def test_random_results_always_give_well_formed_charts(results, names):
    out = results_charts(results, names)
    assert len(out) == 4
    for _, svg in out:
        check_document(svg, words=False)
    for _, svg in results_charts(results, ["Control", "Arm 1", "Arm 2"]):
        check_document(svg)  # with plain names, not a word of nan or inf either


@settings(max_examples=100, deadline=None)
@given(
    entries=st.lists(
        st.fixed_dictionaries(
            {
                "variant_id": st.none() | st.text(max_size=20),
                "input_tokens": st.integers(0, 10**16),
                "output_tokens": st.integers(0, 10**16),
                "total_tokens": st.integers(0, 10**16),
                "outcomes": st.integers(0, 10**9),
            }
        ),
        max_size=6,
    ),
    names=st.dictionaries(st.none() | st.text(max_size=10), st.text(max_size=40), max_size=4),
)
def test_random_usage_always_gives_a_well_formed_chart(entries, names):
    check_document(usage_chart({"object": "usage", "by_variant": entries}, names), words=False)


def test_tick_labels_say_what_the_axis_measures() -> None:
    """A "k" tick is thousands: the axis of 263,060 tokens ends at 300k, not 30k."""
    for total in (2_500, 26_306, 263_060, 2_630_600):
        svg = charts.usage_chart(
            {
                "object": "usage",
                "input_tokens": total,
                "output_tokens": 0,
                "total_tokens": total,
                "outcomes": 1,
                "by_variant": [
                    {
                        "variant_id": None,
                        "input_tokens": total,
                        "output_tokens": 0,
                        "total_tokens": total,
                        "outcomes": 1,
                    }
                ],
            },
            {None: "base"},
        )
        ticks = []
        for text in re.findall(r">(-?[\d,.]+)([kMB]?)</text>", svg):
            number, suffix = float(text[0].replace(",", "")), text[1]
            ticks.append(number * {"": 1, "k": 1e3, "M": 1e6, "B": 1e9}[suffix])
        assert ticks and max(ticks) >= total and max(ticks) < total * 10, (total, ticks)


# --- a rollout's guardrail over time (issue 20) ---------------------------------------------------


def test_sequence_chart_draws_the_band_the_estimate_and_the_limit():
    svg = charts.sequence_chart(
        "Success rate",
        [0, 60, 120, 400],
        [None, -0.1, -0.3, -0.5],
        [None, [-0.4, 0.2], [-0.5, -0.1], [-0.57, -0.43]],
        threshold=-0.02,
        percent=True,
        steps=[(0, 5), (200, 25)],
        breached=[False, False, False, True],
    )
    root = check_document(svg)
    # The first figure has none yet: the line and the band start at the second.
    (estimate,) = elements(root, "polyline", "estimate")
    assert len(estimate.get("points").split()) == 3
    (band,) = elements(root, "polygon", "cs")
    assert len(band.get("points").split()) == 6 and band.get("fill-opacity") == "0.15"
    assert len(elements(root, "polyline", "cs-edge")) == 2
    (limit,) = elements(root, "line", "threshold")
    (zero,) = elements(root, "line", "zero")
    assert float(limit.get("y1")) > float(zero.get("y1"))  # below 0: lower on the page
    assert len(elements(root, "circle", "breach")) == 1
    (step,) = elements(root, "line", "step")  # the first step begins at the start: no line
    words = drawn_text(root)
    assert "25%" in words and "limit -2.0%" in words and "minutes since the start" in words
    desc = root.find(f"{SVG}desc").text
    assert "3 figures" in desc and "-50.0%" in desc and "breached" in desc and "not breached" not in desc


def test_sequence_chart_breaks_its_line_at_a_gap_and_picks_its_time_unit():
    hours = [0, 3600, 7200, 10800, 14400]
    svg = charts.sequence_chart(
        "Mean latency",
        hours,
        [-10, None, -30, -20, -5],
        [[-60, 40], None, [-80, 20], [-50, 10], [-40, 30]],
        threshold=-250,
    )
    root = check_document(svg)
    assert len(elements(root, "polyline", "estimate")) == 2 and len(elements(root, "polygon", "cs")) == 2
    assert "hours since the start" in drawn_text(root) and "not breached" in root.find(f"{SVG}desc").text
    assert "No figures yet" in charts.sequence_chart("x", [0], [None], [None], threshold=-1)


def test_sequence_chart_escapes_and_survives_anything():
    svg = charts.sequence_chart(
        EVIL,
        [0, float("nan"), 5, 1e300],
        [1e300, 0.1, float("inf"), -1e300],
        [[0, 1], "x", None, [2, 1]],
        threshold=float("nan"),
        axis_title=EVIL,
        steps=[("x", None), (3, 50)],
    )
    root = check_document(svg, words=False)
    assert EVIL in all_text(root) and "<script>" not in svg


def test_guardrail_charts_follow_the_history_and_mark_the_steps():
    rollout = {
        "status": "rolled_back",
        "started_at": "2026-12-06T10:00:00.000000Z",
        "steps": [{"percent": 5, "hold_seconds": 60}, {"percent": 50, "hold_seconds": 60}],
        "guardrails": [
            {"metric": "success_rate", "max_degradation": 0.02},
            {"metric": "latency_ms_mean", "max_degradation": 250},
        ],
        "progress": None,
    }

    def figures(estimate, breached=False):
        return [
            {
                "metric": "success_rate",
                "estimate": estimate,
                "cs": [estimate - 0.1, estimate + 0.1],
                "n": [10, 10],
                "breached": breached,
                "max_degradation": 0.02,
            },
        ]  # no latency figures: that chart has none

    history = [
        {"at": "2026-12-06T10:01:00+00:00", "step": 0, "percent": 5, "guardrails": figures(-0.01)},
        {"at": "2026-12-06T10:03:00+00:00", "step": 1, "percent": 50, "guardrails": figures(-0.2, True)},
    ]
    (rate, rate_name, rate_svg), (latency, _, latency_svg) = charts.guardrail_charts(rollout, history)
    assert (rate, rate_name, latency) == ("success_rate", "Success rate", "latency_ms_mean")
    root = check_document(rate_svg)
    assert len(elements(root, "line", "step")) == 1 and "50%" in drawn_text(root)
    assert len(elements(root, "circle", "breach")) == 1
    assert "variant − live config" in " ".join(drawn_text(root))
    assert "No figures yet" in latency_svg
