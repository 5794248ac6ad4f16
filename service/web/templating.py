"""Jinja2 environment, formatting filters and the render helper every page uses."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from edgedistill.service.web import auth
from edgedistill.service.web.labels import variant_label

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


# Pages load nothing but their own files: no inline script or style, no third party, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


DASH = "\u2013"  # en dash: "no value"
TIMES = "\u00d7"


def fmt_bytes(value: float | int | None) -> str:
    """1536 -> '1.5 KiB'; exact bytes below 1 KiB."""
    if value is None:
        return DASH
    v = float(value)
    if abs(v) < 1024:
        return f"{int(v):,} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        v /= 1024.0
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:,.1f} {unit}" if v < 100 else f"{v:,.0f} {unit}"
    return f"{v:,.0f} TiB"


def fmt_duration(seconds: float | int | None) -> str:
    if seconds is None:
        return DASH
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms" if s > 0 else "0 s"
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return DASH
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 1:
        return f"{value:.2f} ms"
    return f"{value * 1000:.1f} µs"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """A fraction 0-1 as a percentage."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{100.0 * value:.{digits}f}%"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:,.1f}{TIMES}" if value < 100 else f"{value:,.0f}{TIMES}"


def fmt_num(value: float | int | None) -> str:
    if value is None:
        return DASH
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3g}"
    return f"{int(value):,}"


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return DASH
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_time_short(value: datetime | None) -> str:
    """For table cells: minutes, UTC (the column header says so; the full time is in the title)."""
    if value is None:
        return DASH
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def fmt_pct1(value: Any) -> str:
    """A share as a percentage with one decimal (0.52 -> "52.0 %"); DASH when unknown."""
    return f"{100 * value:.1f} %" if isinstance(value, int | float) and not isinstance(value, bool) else DASH


def fmt_verdict(quality: Any) -> str:
    from edgedistill.contracts.verdict import verdict_line

    return verdict_line(quality) or ""


def short_id(value: str | None) -> str:
    return (value or "")[:8]


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        bytes=fmt_bytes,
        duration=fmt_duration,
        ms=fmt_ms,
        pct=fmt_pct,
        ratio=fmt_ratio,
        num=fmt_num,
        time=fmt_time,
        time_short=fmt_time_short,
        iso=iso,
        short=short_id,
        pct1=fmt_pct1,
        verdict=fmt_verdict,
    )
    env.globals["asset"] = asset_url
    env.globals["label"] = variant_label
    return env


@cache
def _asset_version(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def asset_url(name: str) -> str:
    """A static file's URL with a content hash, so browsers never run a stale script after an upgrade."""
    return f"/ui/static/{name}?v={_asset_version(name)}"


def render_string(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """A full page: adds the user, the CSRF token and the current path for the navigation."""
    ctx: dict[str, Any] = {
        "request_path": request.url.path,
        "user": getattr(request.state, "user", None),
        "csrf_token": auth.csrf_token(request),
        "csrf_field": auth.CSRF_FIELD,
    }
    ctx.update(context or {})
    response = HTMLResponse(render_string(name, **ctx), status_code=status_code, headers=SECURITY_HEADERS)
    return auth.finish_response(request, response)  # type: ignore[return-value]
