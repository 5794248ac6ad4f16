"""Server-side SVG charts: horizontal bar charts (optionally grouped) and line charts, with labelled
axes and units. Pure functions returning markup; colours come from CSS classes (s0..s5), so the
charts follow the page's light or dark theme, and no inline style is used (the pages' CSP forbids it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

Fmt = Callable[[float], str]


def _f(v: float) -> str:
    """Compact coordinates."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v < hi + step * 0.5:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


@dataclass
class Series:
    name: str
    css: str = "s0"


@dataclass
class Bar:
    value: float | None
    text: str = ""
    series: int = 0
    title: str = ""


@dataclass
class Group:
    label: str
    bars: list[Bar] = field(default_factory=list)
    sublabel: str = ""


def _frame(
    chart_id: str,
    width: int,
    height: int,
    title: str,
    desc: str,
    body: list[str],
    css: str,
    aspect: str = "xMinYMin meet",
) -> Markup:
    head = (
        f'<svg class="chart {css}" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="{aspect}">'
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title><desc id="{escape(chart_id)}-d">{escape(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out = []
    for s in series:
        out.append(
            f'<g class="legend"><rect class="{escape(s.css)}" x="{_f(x)}" y="{_f(y - 9)}" '
            'width="10" height="10" rx="2"/>'
            f'<text x="{_f(x + 14)}" y="{_f(y)}">{escape(s.name)}</text></g>'
        )
        x += 26 + 7.2 * len(s.name)
    return out


def bar_chart(
    chart_id: str,
    groups: Sequence[Group],
    *,
    title: str,
    x_label: str,
    tick_fmt: Fmt,
    series: Sequence[Series] = (Series("value"),),
    max_value: float | None = None,
    width: int = 560,
    label_width: int = 132,
    value_width: int = 120,
) -> Markup:
    """Horizontal bars, one row per bar, grouped under a label per group. x_label names the unit."""
    bar_h, gap, group_gap = 14.0, 4.0, 12.0
    legend_h = 22.0 if len(series) > 1 else 0.0
    top = 8.0 + legend_h
    plot_x0, plot_x1 = float(label_width), float(width - value_width)
    values = [b.value for g in groups for b in g.bars if b.value is not None]
    vmax = max_value if max_value is not None else max(values, default=0.0)
    ticks = nice_ticks(0.0, vmax if vmax > 0 else 1.0, 5)
    scale_max = ticks[-1] if ticks[-1] > 0 else 1.0

    def sx(v: float) -> float:
        return plot_x0 + (plot_x1 - plot_x0) * max(0.0, min(v, scale_max)) / scale_max

    body: list[str] = []
    y = top
    rows: list[str] = []
    for g in groups:
        n = max(1, len(g.bars))
        block = n * bar_h + (n - 1) * gap
        label_y = y + block / 2 + (0 if g.sublabel else 4)
        rows.append(
            f'<text class="label" x="{_f(plot_x0 - 8)}" y="{_f(label_y)}" text-anchor="end">{escape(g.label)}</text>'
        )
        if g.sublabel:
            rows.append(
                f'<text class="sublabel" x="{_f(plot_x0 - 8)}" y="{_f(label_y + 13)}" text-anchor="end">'
                f"{escape(g.sublabel)}</text>"
            )
        for i, b in enumerate(g.bars):
            by = y + i * (bar_h + gap)
            css = series[b.series].css if b.series < len(series) else "s0"
            name = series[b.series].name if b.series < len(series) else ""
            tip = escape(b.title or f"{g.label} {name}: {b.text}".strip())
            if b.value is None:
                rows.append(
                    f'<text class="na" x="{_f(plot_x0 + 4)}" y="{_f(by + bar_h - 3)}">{escape(b.text or "n/a")}</text>'
                )
                continue
            w = max(1.5, sx(b.value) - plot_x0)
            rows.append(
                f'<rect class="bar {escape(css)}" x="{_f(plot_x0)}" y="{_f(by)}" width="{_f(w)}" height="{_f(bar_h)}" '
                f'rx="2"><title>{tip}</title></rect>'
                f'<text class="value" x="{_f(plot_x0 + w + 6)}" y="{_f(by + bar_h - 3)}">{escape(b.text)}</text>'
            )
        y += block + group_gap
    plot_bottom = y - group_gap + 8
    height = int(plot_bottom + 44)
    for t in ticks:
        x = sx(t)
        body.append(
            f'<line class="grid" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(top - 4)}" y2="{_f(plot_bottom)}"/>'
            f'<text class="tick" x="{_f(x)}" y="{_f(plot_bottom + 16)}" text-anchor="middle">'
            f"{escape(tick_fmt(t))}</text>"
        )
    body.append(f'<line class="axis" x1="{_f(plot_x0)}" x2="{_f(plot_x0)}" y1="{_f(top - 4)}" y2="{_f(plot_bottom)}"/>')
    body.append(
        f'<line class="axis" x1="{_f(plot_x0)}" x2="{_f(plot_x1)}" y1="{_f(plot_bottom)}" y2="{_f(plot_bottom)}"/>'
    )
    body.extend(rows)
    body.append(
        f'<text class="axis-label" x="{_f((plot_x0 + plot_x1) / 2)}" y="{height - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    if legend_h:
        body.extend(_legend(series, plot_x0, 16))
    parts = [
        f"{g.label}: "
        + ", ".join(f"{series[b.series].name if len(series) > 1 else ''} {b.text}".strip() for b in g.bars)
        for g in groups
    ]
    return _frame(chart_id, width, height, title, f"{x_label}. " + "; ".join(parts), body, "bar-chart")


@dataclass
class Line:
    name: str
    points: list[tuple[float, float]]
    css: str = "s0"


def line_chart(
    chart_id: str,
    lines: Sequence[Line],
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_fmt: Fmt,
    x_fmt: Fmt = lambda v: f"{v:g}",
    y_min: float | None = None,
    y_max: float | None = None,
    x_max: float | None = None,
    width: int = 560,
    height: int = 240,
) -> Markup:
    """Lines over a shared x axis (epochs), points marked and titled with their values (only the last
    one on long lines, where markers would hide the line). x_max fixes the axis end (planned epochs)."""
    left, right, top, bottom = 60.0, 16.0, 30.0 if len(lines) > 1 else 14.0, 46.0
    xs = [p[0] for ln in lines for p in ln.points]
    ys = [p[1] for ln in lines for p in ln.points if math.isfinite(p[1])]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_max is not None and x_max > x_hi:
        x_hi = x_max
    if x_hi <= x_lo:
        x_hi = x_lo + 1
    lo = y_min if y_min is not None else min(ys, default=0.0)
    hi = y_max if y_max is not None else max(ys, default=1.0)
    if y_min is None and lo > 0 and (hi - lo) > 0.5 * hi:
        lo = 0.0
    y_ticks = nice_ticks(lo, hi, 5)
    if y_min is not None:
        y_ticks = [t for t in y_ticks if t >= y_min]
    if y_max is not None:
        y_ticks = [t for t in y_ticks if t <= y_max]
    t_lo, t_hi = y_ticks[0], y_ticks[-1] if y_ticks[-1] > y_ticks[0] else y_ticks[0] + 1
    x_ticks = [t for t in nice_ticks(x_lo, x_hi, 6) if x_lo <= t <= x_hi] or [x_lo]
    if all(float(t).is_integer() for t in xs):
        x_ticks = [t for t in x_ticks if float(t).is_integer()] or [x_lo]

    def sx(v: float) -> float:
        return left + (width - left - right) * (v - x_lo) / (x_hi - x_lo)

    def sy(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - t_lo) / (t_hi - t_lo))

    body: list[str] = []
    y0 = height - bottom
    for t in y_ticks:
        body.append(
            f'<line class="grid" x1="{_f(left)}" x2="{_f(width - right)}" y1="{_f(sy(t))}" y2="{_f(sy(t))}"/>'
            f'<text class="tick" x="{_f(left - 6)}" y="{_f(sy(t) + 4)}" text-anchor="end">{escape(y_fmt(t))}</text>'
        )
    for t in x_ticks:
        body.append(
            f'<text class="tick" x="{_f(sx(t))}" y="{_f(y0 + 16)}" text-anchor="middle">{escape(x_fmt(t))}</text>'
        )
    body.append(f'<line class="axis" x1="{_f(left)}" x2="{_f(left)}" y1="{_f(top)}" y2="{_f(y0)}"/>')
    body.append(f'<line class="axis" x1="{_f(left)}" x2="{_f(width - right)}" y1="{_f(y0)}" y2="{_f(y0)}"/>')
    for ln in lines:
        pts = [(x, y) for x, y in ln.points if math.isfinite(y)]
        if not pts:
            continue
        path = " ".join(f"{'M' if i == 0 else 'L'}{_f(sx(x))},{_f(sy(y))}" for i, (x, y) in enumerate(pts))
        body.append(f'<path class="line {escape(ln.css)}" d="{path}"/>')
        r = 3.0
        for x, y in pts if len(pts) <= 40 else pts[-1:]:
            body.append(
                f'<circle class="dot {escape(ln.css)}" cx="{_f(sx(x))}" cy="{_f(sy(y))}" r="{r}">'
                f"<title>{escape(ln.name)} at {escape(x_fmt(x))}: {escape(y_fmt(y))}</title></circle>"
            )
    body.append(
        f'<text class="axis-label" x="{_f((left + width - right) / 2)}" y="{height - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    body.append(
        f'<text class="axis-label" transform="translate(14 {_f((top + y0) / 2)}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    if len(lines) > 1:
        body.extend(_legend([Series(ln.name, ln.css) for ln in lines], left, 16))
    desc = "; ".join(
        f"{ln.name}: {len(ln.points)} points"
        + (f", last {y_fmt(ln.points[-1][1])} at {x_fmt(ln.points[-1][0])}" if ln.points else "")
        for ln in lines
    )
    return _frame(chart_id, width, height, title, f"{y_label} by {x_label}. {desc}", body, "line-chart")


@dataclass
class Point:
    label: str
    x: float
    y: float
    css: str = "s0"
    chosen: bool = False


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 x 10^k ticks covering [lo, hi] (at most about 7 of them)."""
    ticks = [m * 10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if lo <= t <= hi]
    while len(inside) > 7:
        inside = inside[::2]
    return inside or [lo, hi]


def scatter_chart(
    chart_id: str,
    points: Sequence[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_fmt: Fmt,
    y_fmt: Fmt,
    x_limit: tuple[float, str] | None = None,
    y_limit: tuple[float, str] | None = None,
    width: int = 560,
    height: int = 260,
) -> Markup:
    """Labelled points on a log x axis (bytes and milliseconds span decades) and a linear y axis;
    optional limit lines (a budget on x, a quality target on y). The chosen point is ringed."""
    left, right, top, bottom = 60.0, 20.0, 16.0, 46.0
    pts = [p for p in points if p.x > 0 and math.isfinite(p.x) and math.isfinite(p.y)]
    xs = [p.x for p in pts] + ([x_limit[0]] if x_limit else [])
    ys = [p.y for p in pts] + ([y_limit[0]] if y_limit else [])
    x_lo, x_hi = (min(xs) / 1.6, max(xs) * 1.6) if xs else (1.0, 10.0)
    y_ticks = nice_ticks(min(ys, default=0.0), max(ys, default=1.0), 5)
    t_lo, t_hi = y_ticks[0], y_ticks[-1] if y_ticks[-1] > y_ticks[0] else y_ticks[0] + 1

    def sx(v: float) -> float:
        return left + (width - left - right) * (math.log10(v) - math.log10(x_lo)) / math.log10(x_hi / x_lo)

    def sy(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - t_lo) / (t_hi - t_lo))

    y0 = height - bottom
    body: list[str] = []
    for t in y_ticks:
        body.append(
            f'<line class="grid" x1="{_f(left)}" x2="{_f(width - right)}" y1="{_f(sy(t))}" y2="{_f(sy(t))}"/>'
            f'<text class="tick" x="{_f(left - 6)}" y="{_f(sy(t) + 4)}" text-anchor="end">{escape(y_fmt(t))}</text>'
        )
    for t in _log_ticks(x_lo, x_hi):
        body.append(
            f'<text class="tick" x="{_f(sx(t))}" y="{_f(y0 + 16)}" text-anchor="middle">{escape(x_fmt(t))}</text>'
        )
    body.append(f'<line class="axis" x1="{_f(left)}" x2="{_f(left)}" y1="{_f(top)}" y2="{_f(y0)}"/>')
    body.append(f'<line class="axis" x1="{_f(left)}" x2="{_f(width - right)}" y1="{_f(y0)}" y2="{_f(y0)}"/>')
    if x_limit is not None:
        x = sx(x_limit[0])
        body.append(
            f'<line class="limit" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(top)}" y2="{_f(y0)}"/>'
            f'<text class="sublabel" x="{_f(x - 4)}" y="{_f(top + 10)}" text-anchor="end">{escape(x_limit[1])}</text>'
        )
    if y_limit is not None:
        y = sy(y_limit[0])
        body.append(
            f'<line class="limit" x1="{_f(left)}" x2="{_f(width - right)}" y1="{_f(y)}" y2="{_f(y)}"/>'
            f'<text class="sublabel" x="{_f(width - right - 4)}" y="{_f(y - 4)}" text-anchor="end">'
            f"{escape(y_limit[1])}</text>"
        )
    for p in pts:
        cx, cy = sx(p.x), sy(p.y)
        tip = f"{p.label}: {x_fmt(p.x)}, {y_fmt(p.y)}" + (" (device artifact)" if p.chosen else "")
        if p.chosen:
            body.append(f'<circle class="ring" cx="{_f(cx)}" cy="{_f(cy)}" r="9"/>')
        body.append(
            f'<circle class="dot {escape(p.css)}" cx="{_f(cx)}" cy="{_f(cy)}" r="5" data-label="{escape(p.label)}">'
            f"<title>{escape(tip)}</title></circle>"
        )
        anchor = "end" if cx > (left + width - right) / 2 else "start"
        dx = -10 if anchor == "end" else 10
        body.append(
            f'<text class="value" x="{_f(cx + dx)}" y="{_f(cy - 8)}" text-anchor="{anchor}">{escape(p.label)}</text>'
        )
    body.append(
        f'<text class="axis-label" x="{_f((left + width - right) / 2)}" y="{height - 8}" text-anchor="middle">'
        f"{escape(x_label)} (log scale)</text>"
    )
    body.append(
        f'<text class="axis-label" transform="translate(14 {_f((top + y0) / 2)}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    desc = "; ".join(f"{p.label}: {x_fmt(p.x)}, {y_fmt(p.y)}" for p in pts) or "no points"
    return _frame(chart_id, width, height, title, f"{y_label} against {x_label}. {desc}", body, "scatter-chart")


def meter(chart_id: str, used: float, available: float, *, label: str, text: str, width: int = 560) -> Markup:
    """A budget bar: used out of available, red past 100%."""
    frac = used / available if available > 0 else 0.0
    h = 18.0
    w = width * min(frac, 1.0)
    css = "over" if frac > 1 else ("near" if frac > 0.85 else "ok")
    body = [
        f'<rect class="track" x="0" y="0" width="{width}" height="{_f(h)}" rx="4"/>',
        f'<rect class="fill {css}" x="0" y="0" width="{_f(max(w, 2.0))}" height="{_f(h)}" rx="4"/>',
    ]
    return _frame(chart_id, width, int(h), label, text, body, "meter", aspect="none")
