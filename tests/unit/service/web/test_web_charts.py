"""Server-side SVG charts: axes with units, escaped labels, readable long curves, budget bars."""

from __future__ import annotations

import re

from edgedistill.service.web import charts
from edgedistill.service.web.templating import fmt_bytes, fmt_duration, fmt_ms, fmt_ratio


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert charts.nice_ticks(0, 100) == [0, 25, 50, 75, 100]
    assert charts.nice_ticks(0, 13.7) == [0, 5, 10, 15]
    assert charts.nice_ticks(1, 83)[-1] >= 83
    assert charts.nice_ticks(0, 0) == [0, 0.25, 0.5, 0.75, 1.0]  # an empty range still gets an axis


def test_bar_chart_labels_units_and_escapes() -> None:
    svg = charts.bar_chart(
        "c1",
        [charts.Group("<script>x</script>", [charts.Bar(50.0, "50%")]), charts.Group("none", [charts.Bar(None)])],
        title="Quality",
        x_label="Accuracy (%)",
        tick_fmt=lambda v: f"{v:g}%",
        max_value=100,
    )
    assert svg.startswith('<svg class="chart bar-chart" id="c1"') and 'role="img"' in svg
    assert '<title id="c1-t">Quality</title>' in svg and ">Accuracy (%)</text>" in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count('class="bar ') == 1 and ">n/a<" in svg  # a missing value is said, not drawn
    assert ">100%<" in svg and ">0%<" in svg
    assert "style=" not in svg  # the pages' CSP allows no inline style


def test_line_chart_marks_short_curves_and_only_the_end_of_long_ones() -> None:
    short = charts.line_chart(
        "c2", [charts.Line("loss", [(1, 3.0), (2, 2.0), (3, 1.5)])], title="t", x_label="Epoch",
        y_label="Loss", y_fmt=lambda v: f"{v:g}", x_max=10,
    )  # fmt: skip
    assert short.count("<circle") == 3 and ">Epoch</text>" in short and ">10<" in short
    long = charts.line_chart(
        "c3", [charts.Line("fid", [(e, e / 100) for e in range(1, 101)])], title="t", x_label="Epoch",
        y_label="Validation (%)", y_fmt=lambda v: f"{v:g}",
    )  # fmt: skip
    assert long.count("<circle") == 1 and "fid at 100: 1" in long


def test_meter_colours_by_use() -> None:
    assert 'class="fill ok"' in charts.meter("m", 10, 100, label="Flash", text="10%")
    assert 'class="fill near"' in charts.meter("m", 90, 100, label="Flash", text="90%")
    over = charts.meter("m", 150, 100, label="Flash", text="150%")
    assert 'class="fill over"' in over and 'width="560"' in over  # capped at the track


def test_formatters() -> None:
    assert fmt_bytes(512) == "512 B" and fmt_bytes(12760) == "12.5 KiB" and fmt_bytes(1048576) == "1.0 MiB"
    assert fmt_ms(0.0025) == "2.5 µs" and fmt_ms(0.56) == "560.0 µs" and fmt_ms(12.345) == "12.35 ms"
    assert fmt_duration(0.8) == "800 ms" and fmt_duration(75) == "1 min 15 s" and fmt_duration(3700) == "1 h 01 min"
    assert re.fullmatch(r"8\.2.", fmt_ratio(8.18)) and fmt_ratio(None) == "\u2013"


def test_scatter_chart_puts_points_on_a_log_axis_with_limit_lines() -> None:
    points = [
        charts.Point("teacher <fp32>", 880_000, 92.3, "s2"),
        charts.Point("teacher int8", 238_000, 92.2, "s1"),
        charts.Point("student", 34_000, 90.7, "s0", chosen=True),
        charts.Point("no size", 0, 50.0),  # not drawable on a log axis: left out, not plotted at -inf
    ]
    svg = charts.scatter_chart(
        "sc", points, title="Candidates", x_label="file size", y_label="accuracy", x_fmt=lambda v: fmt_bytes(int(v)),
        y_fmt=lambda v: f"{v:.0f} %", x_limit=(1_048_576, "flash budget"), y_limit=(89.5, "quality target"),
    )  # fmt: skip
    assert svg.count('<circle class="dot') == 3 and svg.count('class="ring"') == 1
    assert "teacher &lt;fp32&gt;" in svg and "<fp32>" not in svg
    assert "flash budget" in svg and "quality target" in svg and "file size (log scale)" in svg
    cx = {m[1]: float(m[0]) for m in re.findall(r'cx="([\d.]+)" cy="[\d.]+" r="5" data-label="([^"]+)"', svg)}
    # log scale: 34 kB -> 238 kB is log10(7) and 238 kB -> 880 kB log10(3.7) of the same axis
    left, right = cx["student"], cx["teacher &lt;fp32&gt;"]
    assert left < cx["teacher int8"] < right
    share = (cx["teacher int8"] - left) / (right - left)
    assert abs(share - 0.5979) < 0.01  # log(238/34) / log(880/34)
