"""`edgedistill submit`: upload, submit, follow progress over SSE, download and verify artifacts.

With --wait it ends with the same summary `edgedistill compress` prints (tables of the test-split
metrics and the artifacts, the headline, the warnings); --json prints JSON instead, for machines.
Every failure is one line with what to do (no traceback)."""

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

from edgedistill.client import Client, Job, JobFailed, SseEvent
from edgedistill.contracts.report import read_report
from edgedistill.contracts.statuses import QUEUED, SUCCEEDED
from edgedistill.service.cli_errors import (
    EXIT_BELOW_QUALITY,
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    describe,
)
from edgedistill.service.summary_view import ArtifactRow, below_quality, print_summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgedistill submit",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("teacher", help="teacher model file (.onnx, TorchScript, .pt2) or an uploaded model id")
    p.add_argument("--data", help="transfer set .npz or an uploaded dataset id")
    p.add_argument("--profile", required=True, help="device profile name (built-in or your custom one)")
    p.add_argument("--options", type=Path, help="job options as a YAML/JSON file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one option, e.g. epochs=30")
    p.add_argument(
        "--url", default=os.environ.get("EDGEDISTILL_URL", "http://127.0.0.1:8000"), help="or EDGEDISTILL_URL"
    )
    p.add_argument("--api-key", default=os.environ.get("EDGEDISTILL_API_KEY"), help="or EDGEDISTILL_API_KEY")
    p.add_argument("--idempotency-key")
    p.add_argument("--webhook-url")
    p.add_argument("--wait", action="store_true", help="follow progress until the job ends, then print its summary")
    p.add_argument("--download", type=Path, metavar="DIR", help="download artifacts here (implies --wait)")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for the job at most")
    p.add_argument("--http-timeout", type=float, default=60.0, help="seconds one HTTP request may take (default 60)")
    p.add_argument("--json", action="store_true", help="print JSON (the job; with --wait also its report) on stdout")
    p.add_argument(
        "--require-quality",
        action="store_true",
        help="exit 6 when the job succeeds but its student is below options.quality_target (implies --wait)",
    )
    return p


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.options:
        try:
            loaded = yaml.safe_load(args.options.read_text(encoding="utf-8"))  # safe_load: no object tags
        except yaml.YAMLError as exc:
            raise UsageError(f"--options {args.options} is not valid YAML/JSON: {exc}".replace("\n", " ")) from exc
        if not isinstance(loaded, dict):
            raise UsageError(f"--options {args.options} must hold a mapping of options")
        opts.update(loaded)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
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
        task = progress.add_task("job", total=100, stage=QUEUED, detail="")

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
        progress.update(task, completed=100 if job.status == SUCCEEDED else job.data.get("progress") or 0)
    return job


def _finish(job: Job, args: argparse.Namespace, out: Console, err: Console) -> int:
    """After the job succeeded: download, then the summary (or JSON)."""
    downloaded: list[Path] = []
    if args.download:
        downloaded = job.download(args.download)
        if not args.json:
            table = Table("downloaded", "bytes", "sha256", title_justify="left")
            for path in downloaded:
                table.add_row(str(path), f"{path.stat().st_size:,}", "verified")
            err.print(table)
    artifacts = job.artifacts()
    raw = job.report()
    report = read_report({k: v for k, v in raw.items() if k != "devices"})  # devices: the API's, read when asked
    status = EXIT_BELOW_QUALITY if args.require_quality and below_quality(report) else EXIT_OK
    if args.json:
        doc = {"job": job.data, "report": raw, "artifacts": artifacts, "downloaded": [str(p) for p in downloaded]}
        print(json.dumps(doc, indent=2))
        return status
    rows = [ArtifactRow(a["kind"], a["filename"], int(a["size_bytes"]), a["sha256"]) for a in artifacts]
    print_summary(out, report, rows, report.warnings)
    where = f": {args.download}" if args.download else f" ({args.url}/ui/jobs/{job.id})"
    seconds = job.data.get("duration_s")
    out.print(
        f"done in {seconds:.1f} s{where}" if isinstance(seconds, int | float) else f"done{where}", highlight=False
    )
    if status == EXIT_BELOW_QUALITY:
        err.print(
            f"[red]error:[/] the student is below its quality target (--require-quality): exit {status}",
            highlight=False,
        )
    return status


def _run(args: argparse.Namespace, out: Console, err: Console) -> int:
    if not args.api_key:
        raise UsageError("an API key is needed: --api-key or EDGEDISTILL_API_KEY (edgedistill serve prints one)")
    options = _options(args)
    with Client(args.url, args.api_key, timeout=args.http_timeout) as client:
        job = client.submit(
            args.teacher,
            data=args.data,
            profile=args.profile,
            options=options,
            idempotency_key=args.idempotency_key,
            webhook_url=args.webhook_url,
        )
        err.print(f"job [bold]{job.id}[/] {job.status} ({args.url}/api/v1/jobs/{job.id})", highlight=False)
        if not (args.wait or args.download or args.require_quality):
            if args.json:
                print(json.dumps(job.data, indent=2))
            else:
                out.print(job.id, highlight=False)
            return EXIT_OK
        job = _follow(job.wait, err, args.timeout)
        if job.status != SUCCEEDED:
            if args.json:
                print(json.dumps({"job": job.data}, indent=2))
            raise JobFailed(job.data)
        return _finish(job, args, out, err)


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage (its message printed), 0 for --help
        return int(exc.code or 0)
    out, err = Console(), Console(stderr=True)
    try:
        return _run(args, out, err)
    except KeyboardInterrupt:
        err.print("interrupted; a submitted job goes on on the server")
        return 130
    except Exception as exc:
        known = describe(exc, url=args.url.rstrip("/"))
        if known is None:
            raise  # a bug: the traceback is what a report needs
        code, line = known
        err.print("[red]error:[/]", end=" ")
        err.print(line, markup=False, highlight=False, soft_wrap=True)
        return code if code != EXIT_OK else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
