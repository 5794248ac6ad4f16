"""`edgedistill submit`: upload, submit, follow progress over SSE, download and verify artifacts."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.client import ApiError, Client, JobFailed, SseEvent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgedistill submit", description=__doc__)
    p.add_argument("teacher", help="teacher model file (.onnx, TorchScript, .pt2) or an uploaded model id")
    p.add_argument("--data", help="transfer set .npz or an uploaded dataset id")
    p.add_argument("--profile", required=True, help="device profile name (built-in or your custom one)")
    p.add_argument("--options", type=Path, help="job options as a YAML/JSON file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one option, e.g. epochs=30")
    p.add_argument("--url", default=os.environ.get("EDGEDISTILL_URL", "http://127.0.0.1:8000"))
    p.add_argument("--api-key", default=os.environ.get("EDGEDISTILL_API_KEY"), help="or EDGEDISTILL_API_KEY")
    p.add_argument("--idempotency-key")
    p.add_argument("--webhook-url")
    p.add_argument("--wait", action="store_true", help="follow progress until the job ends")
    p.add_argument("--download", type=Path, metavar="DIR", help="download artifacts here (implies --wait)")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")
    return p


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.options:
        loaded = yaml.safe_load(args.options.read_text(encoding="utf-8"))  # safe_load: no object tags
        if not isinstance(loaded, dict):
            raise SystemExit(f"error: {args.options} must hold a mapping of options")
        opts.update(loaded)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set takes KEY=VALUE, got {item!r}")
        opts[key] = yaml.safe_load(value)
    return opts


def _follow(job_wait: Any, console: Console, timeout: float | None) -> Any:
    with Progress(
        TextColumn("[bold]{task.fields[stage]:<10}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("job", total=100, stage="queued", detail="")

        def on_event(ev: SseEvent) -> None:
            d = ev.data
            fields: dict[str, Any] = {}
            if d.get("stage"):
                fields["stage"] = d["stage"]
            if ev.event == "epoch":
                inner = d.get("data", d)
                fid = inner.get("val_fidelity")
                fields["detail"] = f"epoch {inner.get('epoch')}/{inner.get('epochs')}" + (
                    f" fidelity {fid:.3f}" if isinstance(fid, int | float) else ""
                )
            elif ev.event == "status":
                fields["detail"] = str(d.get("status", ""))
            if isinstance(d.get("progress"), int | float):
                progress.update(task, completed=float(d["progress"]), **fields)
            elif fields:
                progress.update(task, **fields)

        job = job_wait(timeout=timeout, on_event=on_event, check=False)
        progress.update(task, completed=100 if job.status == "succeeded" else job.data.get("progress") or 0)
    return job


def _api_error_line(exc: ApiError) -> str:
    """One line: a 422's entries as 'field: message; ...' (e.g. each teacher/data mismatch)."""
    if isinstance(exc.detail, list):
        parts = []
        for err in exc.detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", []) if p != "body")
                parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
            else:
                parts.append(str(err))
        return f"HTTP {exc.status_code}: " + "; ".join(parts)
    return str(exc)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=True)
    if not args.api_key:
        console.print("error: an API key is needed: --api-key or EDGEDISTILL_API_KEY")
        return 2
    try:
        with Client(args.url, args.api_key) as client:
            job = client.submit(
                args.teacher,
                data=args.data,
                profile=args.profile,
                options=_options(args),
                idempotency_key=args.idempotency_key,
                webhook_url=args.webhook_url,
            )
            console.print(f"job [bold]{job.id}[/] {job.status} ({args.url}/api/v1/jobs/{job.id})")
            if not (args.wait or args.download):
                print(json.dumps(job.data, indent=2))
                return 0
            job = _follow(job.wait, console, args.timeout)
            if job.status != "succeeded":
                raise JobFailed(job.data)
            if args.download:
                table = Table("artifact", "bytes", "sha256 (verified)")
                for path in job.download(args.download):
                    table.add_row(str(path), str(path.stat().st_size), "ok")
                console.print(table)
            print(json.dumps(job.data, indent=2))
            return 0
    except JobFailed as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    except ApiError as exc:
        console.print("[red]error:[/]", end=" ")
        console.print(_api_error_line(exc), markup=False, highlight=False, soft_wrap=True)
        return 1
    except (OSError, TimeoutError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
