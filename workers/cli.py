"""`edgedistill compress`: run the whole compression pipeline on this machine (no server, no DB).

    edgedistill compress teacher.onnx --data transfer.npz --profile mcu-cortex-m4 --out out/
    edgedistill compress teacher.pt2 --method data_free --profile cpu-x86 --out out/       # no data
    edgedistill compress teacher.onnx --data new.npz --init-from out/student_fp32.onnx ... # lifelong

Options come from --options FILE (YAML/JSON, the same fields as a job's options) with the flags
below on top. Exit status: 0 success, 1 the pipeline failed (reason printed), 2 usage error,
6 with --require-quality: the run finished but its student is below options.quality_target (the
artifacts are still written), 130 interrupted."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from edgedistill.contracts.errors import PipelineError
from edgedistill.contracts.events import PipelineEvent
from edgedistill.contracts.profiles import ProfileError, resolve_profile
from edgedistill.contracts.report import read_report
from edgedistill.contracts.spec import METHODS, JobOptions, PipelineSpec
from edgedistill.service.cli_errors import EXIT_BELOW_QUALITY
from edgedistill.service.summary_view import ArtifactRow, below_quality, print_summary


class UsageError(Exception):
    """Bad command line or option files: exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgedistill compress",
        description="Distill a small student from a teacher, quantize it to int8 and export it for a device.",
    )
    p.add_argument("teacher", type=Path, help="teacher model: ONNX, TorchScript (.pt) or torch.export (.pt2)")
    p.add_argument(
        "--data",
        type=Path,
        help="transfer data .npz with x (and optionally y); optional with --method data_free / auto "
        "(with data_free it is used only as held-out evaluation data)",
    )
    p.add_argument("--profile", required=True, help="built-in device profile name or a .yaml/.json profile file")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--options", type=Path, help="YAML/JSON file with job options; flags override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--method", help=f"distillation method: {', '.join(METHODS)} (default kd)")
    p.add_argument(
        "--init-from",
        type=Path,
        help="continue an earlier run's student: its student_fp32.onnx (or run folder); report.json next to it",
    )
    p.add_argument(
        "--old-data", type=Path, help="the earlier run's data (.npz) to measure forgetting on; default its probe.npz"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--width", type=int, help="student width (channels / hidden units); default: automatic")
    p.add_argument("--depth", type=int, help="student depth (blocks / hidden layers); default: automatic")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train the student")
    p.add_argument("--quiet", action="store_true", help="no progress display, only the summary")
    p.add_argument(
        "--quality-target",
        type=float,
        help="share of the teacher's quality the student must keep (default 0.97); options.quality_target",
    )
    p.add_argument(
        "--require-quality",
        action="store_true",
        help=f"exit {EXIT_BELOW_QUALITY} when the student is below the quality target (artifacts are still written)",
    )
    return p


def _read_options_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read options file {path}: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"options file {path} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"options file {path} must hold a mapping of option names to values")
    return data


def build_spec(args: argparse.Namespace) -> PipelineSpec:
    for what, path in (("teacher", args.teacher), ("data", args.data)):
        if path is not None and not path.is_file():
            raise UsageError(f"{what} file {str(path)!r} does not exist")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"output folder {str(args.out)!r} already exists and is not empty")
    raw = _read_options_file(args.options) if args.options else {}
    flags = {
        "epochs": args.epochs,
        "method": args.method,
        "seed": args.seed,
        "device": args.device,
        "quality_target": args.quality_target,
        "init_from": str(args.init_from) if args.init_from else None,
        "old_data": str(args.old_data) if args.old_data else None,
    }
    raw.update({k: v for k, v in flags.items() if v is not None})
    if args.width is not None or args.depth is not None:
        student = dict(raw.get("student") or {})
        if args.width is not None:
            student["width"] = args.width
        if args.depth is not None:
            student["depth"] = args.depth
        raw["student"] = student
    try:
        options = JobOptions.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(f"invalid options: {_validation_message(exc)}") from exc
    try:
        profile = resolve_profile(args.profile)
    except ProfileError as exc:
        raise UsageError(str(exc)) from exc
    except ValidationError as exc:
        raise UsageError(f"invalid profile {args.profile}: {_validation_message(exc)}") from exc
    if args.data is None and options.method not in ("data_free", "auto"):
        raise UsageError("--data is required unless --method is data_free or auto")
    init_from, init_report, old_data = _lifelong_paths(options)
    return PipelineSpec(
        teacher_path=args.teacher,
        data_path=args.data,
        profile=profile,
        options=options,
        out_dir=args.out,
        init_from_path=init_from,
        init_from_report=init_report,
        old_data_path=old_data,
    )


def _lifelong_paths(options: JobOptions) -> tuple[Path | None, Path | None, Path | None]:
    """options.init_from / old_data as local paths: the earlier run's ONNX student, its report.json
    and the old data (default: the earlier run's probe.npz)."""
    if options.init_from is None:
        if options.old_data is not None:
            raise UsageError("--old-data needs --init-from")
        return None, None, None
    onnx_path = Path(options.init_from)
    if onnx_path.is_dir():
        onnx_path = onnx_path / "student_fp32.onnx"
    if not onnx_path.is_file():
        raise UsageError(f"init_from {str(onnx_path)!r} does not exist (give a previous run's student_fp32.onnx)")
    report = onnx_path.parent / "report.json"
    if not report.is_file():
        raise UsageError(f"no report.json next to {str(onnx_path)!r}: it records the earlier student's architecture")
    old: Path | None
    if options.old_data is not None:
        old = Path(options.old_data)
        if not old.is_file():
            raise UsageError(f"old data file {str(old)!r} does not exist")
    else:
        probe = onnx_path.parent / "probe.npz"
        old = probe if probe.is_file() else None
    return onnx_path, report, old


def precheck(spec: PipelineSpec) -> str | None:
    """The API's submit-time checks before anything runs: the teacher's recorded signature (ONNX,
    TFLite) against the data's arrays and the options. One line naming every problem, or None."""
    from edgedistill.contracts.formats import check_npz
    from edgedistill.contracts.signature_readers import inspect_model
    from edgedistill.contracts.submit_checks import one_line, submit_problems

    try:
        fmt, signature = inspect_model(spec.teacher_path)
        summary = check_npz(spec.data_path) if spec.data_path is not None else None
    except PipelineError:
        return None  # an unreadable file: the pipeline's load stage reports it, with its stage
    data = {k: (summary.arrays[k].shape, summary.arrays[k].dtype) for k in summary.input_keys} if summary else None
    problems = submit_problems(signature, model_format=fmt, data=data, options=spec.options)
    return one_line(problems) if problems else None


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors())


class ProgressView:
    """Turns pipeline events into one rich progress bar: stage, epoch and validation fidelity."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> ProgressView:
        self.progress.__enter__()
        self.task = self.progress.add_task("starting", total=100)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def on_event(self, event: PipelineEvent) -> None:
        assert self.task is not None
        update: dict[str, Any] = {}
        if event.progress is not None:
            update["completed"] = event.progress
        d = event.data
        if event.kind == "stage_started":
            update["description"] = event.stage
        elif event.kind == "stage_finished":
            self.console.print(f"[green]✓[/] {event.stage} ({d.get('seconds', 0):.1f} s)")
        elif event.kind == "epoch":
            acc = d.get("val_accuracy")
            extra = f" · acc {acc:.3f}" if isinstance(acc, float) else ""
            update["description"] = (
                f"{event.stage} · epoch {d['epoch']}/{d['epochs']} · fidelity {d['val_fidelity']:.3f}{extra}"
            )
        elif event.kind == "progress":
            self.console.print(f"  {d.get('message', '')}", style="dim", markup=False, soft_wrap=True)
        elif event.kind == "warning":
            self.console.print("  [yellow]warning:[/]", end=" ")
            self.console.print(str(d.get("message", "")), markup=False, soft_wrap=True)
        elif event.kind == "artifact":
            self.console.print(
                f"  [cyan]artifact[/] {d.get('kind')}: {d.get('filename')} ({d.get('size_bytes', 0):,} B)"
            )
        if update:
            self.progress.update(self.task, **update)


def _error(console: Console, message: str) -> None:
    # soft_wrap: paths and reasons stay on one line, whatever the terminal width; markup off so
    # brackets in user-supplied names print as they are.
    console.print("[red]error:[/]", end=" ")
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 for --help
        return int(exc.code or 0)
    out, err = Console(), Console(stderr=True)
    try:
        spec = build_spec(args)
    except UsageError as exc:
        _error(err, str(exc))
        return 2
    problems = precheck(spec)
    if problems:
        _error(err, problems)
        return 1

    from edgedistill.workers.pipeline.runner import run_pipeline

    try:
        if args.quiet:
            result = run_pipeline(spec)
        else:
            with ProgressView(err) as view:
                result = run_pipeline(spec, on_event=view.on_event)
    except PipelineError as exc:
        where = f" (stage {exc.stage})" if exc.stage else ""
        _error(err, f"{exc}{where}")
        return 1
    except KeyboardInterrupt:
        _error(err, "interrupted; nothing was written")
        return 130

    # The same summary `edgedistill submit --wait` prints for a job (service/summary_view.py).
    arts = [ArtifactRow(k, a.path.name, a.size_bytes, a.sha256) for k, a in result.artifacts.items()]
    report = read_report(result.report if isinstance(result.report, dict) else {})
    print_summary(out, report, arts, result.warnings)
    out.print(f"done in {result.seconds:.1f} s: {result.out_dir}")
    if args.require_quality and below_quality(report):
        _error(err, f"the student is below its quality target (--require-quality): exit {EXIT_BELOW_QUALITY}")
        return EXIT_BELOW_QUALITY
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
