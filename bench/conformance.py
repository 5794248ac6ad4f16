"""Conformance benchmark (issue 10): real third-party and real-data teachers (bench/material.py) go
through the real engine (workers.pipeline.run_pipeline, as `edgedistill compress` runs it) on
mobile-arm64, and on mcu-cortex-m4 where the case can fit; the device artifact (int8 TFLite; full-int8
TFLite run in TFLite Micro for the MCU) is judged on held-out data against the teacher with the
metric of each output's kind. One row per judged output; a case that fails says why in its row and
the others still run.

    .venv/bin/python -m bench.conformance --work /tmp/conf [--cases magika,vad] [--profiles mobile-arm64]
                                          [--epochs N] [--json out.json]

Targets (issue 10): classification top-1 agreement >= 0.95 (>= 0.90 above 100 classes); sigmoid
balanced decision agreement >= 0.95; face-score agreement >= 0.90 on the detector; the int8 student
file >= 4x smaller than the teacher file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.material import CASES, MCU, MOBILE, SINGLE_INPUT, Case, build_case, inputs_of, load_npz, run_teacher

CLASS_KINDS = ("logits", "probabilities", "log_probabilities", "class_index")
SIGMOID_KINDS = ("sigmoid", "multilabel")
TARGET_AGREEMENT = 0.95
TARGET_AGREEMENT_MANY = 0.90  # above 100 classes
MANY_CLASSES = 100
TARGET_SIGMOID = 0.95
TARGET_FACE = 0.90
TARGET_BYTES_X = 4.0
# the model files --every-artifact also judges (the device artifact always is)
JUDGED_KINDS = ("onnx_fp32", "onnx_int8", "tflite_int8", "tflite_int8_full", "executorch_int8")
TFLM_MAX_SAMPLES = 300  # the MCU interpreter runs one sample at a time; enough to judge, bounded in time


@dataclass
class Row:
    case: str
    profile: str
    output: str = ""
    kind: str = ""
    teacher_bytes: int | None = None
    student_bytes: int | None = None
    artifact: str = ""
    metric: str = ""
    value: float | None = None
    target: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    io_kept: str = ""
    met: bool = False
    why: str = ""
    seconds: float = 0.0

    @property
    def bytes_x(self) -> float | None:
        if self.teacher_bytes and self.student_bytes:
            return self.teacher_bytes / self.student_bytes
        return None


# --------------------------------------------------------------------------------------------------
# metrics of each kind, against the teacher (independent of the engine's own metrics)
# --------------------------------------------------------------------------------------------------


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(v.astype(np.float64), -60, 60)))


def top1_agreement(student: np.ndarray, teacher: np.ndarray) -> float:
    s = student if student.ndim == 1 else student.reshape(len(student), -1).argmax(1)
    t = teacher if teacher.ndim == 1 else teacher.reshape(len(teacher), -1).argmax(1)
    return float((s.astype(np.int64) == t.astype(np.int64)).mean())


def balanced_agreement(student_p: np.ndarray, teacher_p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Decision agreement at the teacher's threshold, averaged over teacher-positive and teacher-negative
    samples (each unit a sample), so "always no" scores 0.5, not the share of negatives."""
    s = student_p.reshape(-1) >= threshold
    t = teacher_p.reshape(-1) >= threshold
    out = {"positives": float(t.sum()), "negatives": float((~t).sum())}
    if t.all() or not t.any():
        out["balanced_agreement"] = float("nan")
        return out
    tpr = float((s[t]).mean())
    tnr = float((~s[~t]).mean())
    out.update(balanced_agreement=(tpr + tnr) / 2, agree_pos=tpr, agree_neg=tnr)
    return out


def num_classes(case: Case, teacher_out: dict[str, np.ndarray], name: str) -> int:
    v = teacher_out[name]
    if v.ndim >= 2:
        return int(np.prod(v.shape[1:]))
    return int(v.max()) + 1


def judge(case: Case, teacher_out: dict[str, np.ndarray], student_out: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One verdict per judged teacher output: metric, value, target, extra figures."""
    verdicts: list[dict[str, Any]] = []
    for name, kind in case.kinds.items():
        if name not in student_out:
            verdicts.append({"output": name, "kind": kind, "error": f"the artifact has no output {name!r}"})
            continue
        t, s = teacher_out[name], student_out[name]
        if kind in CLASS_KINDS:
            classes = num_classes(case, teacher_out, name)
            target = TARGET_AGREEMENT_MANY if classes > MANY_CLASSES else TARGET_AGREEMENT
            verdicts.append(
                {
                    "output": name,
                    "kind": kind,
                    "metric": "top1_agreement",
                    "value": top1_agreement(s, t),
                    "target": target,
                    "extra": {"classes": float(classes)},
                }
            )
        elif kind in SIGMOID_KINDS:
            b = balanced_agreement(s, t)
            verdicts.append(
                {
                    "output": name,
                    "kind": kind,
                    "metric": "balanced_agreement",
                    "value": b.pop("balanced_agreement"),
                    "target": TARGET_SIGMOID,
                    "extra": b,
                }
            )
        elif kind == "sigmoid_logits":  # detector anchor scores: judged as the face score per image
            tf = _sigmoid(t.reshape(len(t), -1)).max(1)
            sf = _sigmoid(s.reshape(len(s), -1)).max(1)
            b = balanced_agreement(sf, tf)
            face_agree = float(((sf >= 0.5) == (tf >= 0.5)).mean())
            extra = {**b, "anchor_balanced": balanced_agreement(_sigmoid(s), _sigmoid(t))["balanced_agreement"]}
            extra["face_balanced"] = extra.pop("balanced_agreement")
            verdicts.append(
                {
                    "output": name,
                    "kind": kind,
                    "metric": "face_score_agreement",
                    "value": face_agree,
                    "target": TARGET_FACE,
                    "extra": extra,
                }
            )
        elif kind == "boxes":
            scores = case.options.get("outputs", {}).get(name, {}).get("scores")
            extra: dict[str, float] = {}
            if scores and scores in teacher_out:
                mask = _sigmoid(teacher_out[scores]).reshape(t.shape[0], t.shape[1]) >= 0.5
                extra["positive_anchors"] = float(mask.sum())
                if mask.any():
                    extra["mae_on_positive_anchors"] = float(np.abs(s[mask] - t[mask]).mean())
                    extra["teacher_mean_abs"] = float(np.abs(t[mask]).mean())
            value = extra.get("mae_on_positive_anchors", float(np.abs(s - t).mean()))
            verdicts.append({"output": name, "kind": kind, "metric": "box_mae", "value": value, "target": None,
                             "extra": extra})  # fmt: skip
        else:  # regression
            ss_res = float(((s - t) ** 2).sum())
            ss_tot = float(((t - t.mean(0)) ** 2).sum()) or 1e-12
            verdicts.append({"output": name, "kind": kind, "metric": "r2", "value": 1 - ss_res / ss_tot,
                             "target": None, "extra": {"mae": float(np.abs(s - t).mean())}})  # fmt: skip
    return verdicts


# --------------------------------------------------------------------------------------------------
# running the engine's artifacts (its own runtimes: the contract's predict_all when present)
# --------------------------------------------------------------------------------------------------


def engine_has_multi_io() -> bool:
    """Whether the engine on this checkout reads one npz key per teacher input (issue 10's data path)."""
    from edgedistill.workers.steps import data

    return hasattr(data.TransferData, "inputs_of")


def trained_outputs(case: Case) -> list[str]:
    return [n for n, k in case.kinds.items() if k != "class_index"]


def run_artifact(kind: str, path: Path, case: Case, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of the artifact by the teacher's name, in the runtime wrapper the engine and the agent
    use (edgedistill.runtimes); the full-int8 file in the TFLite Micro interpreter, as verify runs it."""
    from edgedistill.runtimes import open_model
    from edgedistill.runtimes.tflm import run_tflm_all

    if kind == "tflite_int8_full":
        out, _arena = run_tflm_all(path, {k: v[:TFLM_MAX_SAMPLES] for k, v in inputs.items()})
        return dict(out)
    return dict(open_model(path, kind).predict_all(inputs))


def io_check(onnx_path: Path, case: Case, heldout: dict[str, np.ndarray]) -> str:
    """Drop-in check on the fp32 ONNX student: the teacher's input names and per-sample shapes, and
    every teacher output name."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ins = [(i.name, tuple(i.shape[1:])) for i in sess.get_inputs()]
    outs = [o.name for o in sess.get_outputs()]
    problems = []
    want_in = [(n, tuple(heldout[n].shape[1:])) for n in case.input_names]
    if [n for n, _ in ins] != [n for n, _ in want_in]:
        problems.append(f"inputs {[n for n, _ in ins]} != {[n for n, _ in want_in]}")
    else:
        for (n, got), (_, want) in zip(ins, want_in, strict=True):
            if tuple(d if isinstance(d, int) else None for d in got) != want:
                problems.append(f"{n} {got} != {want}")
    if outs != list(case.kinds):
        problems.append(f"outputs {outs} != {list(case.kinds)}")
    return "yes" if not problems else "no: " + "; ".join(problems)


# --------------------------------------------------------------------------------------------------
# one case on one profile
# --------------------------------------------------------------------------------------------------


def _engine_data(case: Case, work: Path) -> Path:
    """The transfer file as this engine reads it: one key per input name; the engine before issue 10
    only reads `x` (+ y), which single-input teachers still accept."""
    if engine_has_multi_io() or len(case.input_names) != 1:
        return case.transfer
    legacy = work / f"{case.name}-transfer-x.npz"
    if not legacy.is_file():
        arrays = load_npz(case.transfer)
        arrays["x"] = arrays.pop(case.input_names[0])
        np.savez(legacy, **arrays)
    return legacy


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """KEY=JSON pairs (a bare word that is not JSON counts as a string) -> job options."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option wants KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def run_case(case: Case, profile: str, work: Path, options: dict[str, Any], every: bool = False) -> list[Row]:
    """The job's rows: one per judged output of the device artifact; every: also of each other artifact
    the job wrote (fp32 ONNX, ORT int8 ...), so float and int8 losses read apart."""
    from edgedistill.contracts.profiles import builtin_profiles
    from edgedistill.contracts.spec import JobOptions, PipelineSpec
    from edgedistill.workers.pipeline.runner import run_pipeline

    base = Row(case.name, profile, teacher_bytes=case.teacher.stat().st_size)
    out_dir = work / "runs" / f"{case.name}-{profile}-{int(time.time() * 1000)}"
    t0 = time.perf_counter()
    try:
        spec = PipelineSpec(
            teacher_path=case.teacher,
            data_path=_engine_data(case, work),
            profile=builtin_profiles()[profile],
            options=JobOptions.model_validate({**options, **case.options}),
            out_dir=out_dir,
        )
        result = run_pipeline(spec)
    except Exception as exc:  # the row says why; the other cases still run
        base.why = f"engine: {type(exc).__name__}: {_first_line(exc)}"
        base.seconds = time.perf_counter() - t0
        return [base]
    base.seconds = time.perf_counter() - t0
    primary = result.report["headline"]["primary_artifact"]
    base.artifact = primary or ""
    if not primary:
        base.why = "the run produced no device artifact"
        return [base]
    base.student_bytes = result.artifacts[primary].size_bytes
    heldout = load_npz(case.heldout)
    inputs = inputs_of(case, heldout)
    try:
        base.io_kept = io_check(result.artifacts["onnx_fp32"].path, case, heldout)
    except Exception as exc:
        base.why = f"checking the I/O: {type(exc).__name__}: {_first_line(exc)}"
        return [base]
    kinds = [primary, *(k for k in result.artifacts if k != primary and k in JUDGED_KINDS)] if every else [primary]
    rows: list[Row] = []
    teacher_by_n: dict[int, dict[str, np.ndarray]] = {}  # the teacher runs once per sample count, not per file
    for kind in kinds:
        row = replace(base, artifact=kind, student_bytes=result.artifacts[kind].size_bytes)
        try:
            student = run_artifact(kind, result.artifacts[kind].path, case, inputs)
            n = len(next(iter(student.values())))
            if n not in teacher_by_n:
                teacher_by_n[n] = run_teacher(case.teacher, {k: v[:n] for k, v in inputs.items()})
            verdicts = judge(case, teacher_by_n[n], student)
        except Exception as exc:
            row.why = f"judging {kind}: {type(exc).__name__}: {_first_line(exc)}"
            traceback.print_exc()
            rows.append(row)
            continue
        rows += [_row(row, v) for v in verdicts]
    return rows


def _row(base: Row, v: dict[str, Any]) -> Row:
    row = Row(**{**asdict(base), "extra": {}})
    row.output, row.kind = v["output"], v["kind"]
    if "error" in v:
        row.why = v["error"]
        return row
    row.metric, row.value, row.target, row.extra = v["metric"], v["value"], v["target"], dict(v.get("extra") or {})
    reasons = []
    if row.target is not None:
        if row.value is None or not np.isfinite(row.value):
            reasons.append(f"{row.metric} undefined ({_extra_txt(row.extra)})")
        elif row.value < row.target:
            reasons.append(f"{row.metric} {row.value:.3f} < {row.target:.2f} by {row.target - row.value:.3f}")
    bx = row.bytes_x
    if bx is not None and bx < TARGET_BYTES_X:
        reasons.append(f"only {bx:.1f}x smaller (< {TARGET_BYTES_X:.0f}x)")
    if row.io_kept.startswith("no"):
        reasons.append("I/O changed")
    row.met = not reasons and row.target is not None
    row.why = "; ".join(reasons) if reasons else ("no target (reported)" if row.target is None else "")
    return row


def _extra_txt(extra: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in extra.items())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


# --------------------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="conformance: real teachers, int8 device artifact vs teacher on held-out data")
    for col in ("case", "profile", "artifact", "output (kind)", "teacher B", "artifact B", "ratio", "metric", "value",
                "target", "I/O kept", "result", "s"):  # fmt: skip
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.case,
            r.profile,
            r.artifact,
            f"{r.output} ({r.kind})" if r.output else "",
            f"{r.teacher_bytes:,}" if r.teacher_bytes else "",
            f"{r.student_bytes:,}" if r.student_bytes else "",
            f"{r.bytes_x:.1f}x" if r.bytes_x else "",
            r.metric,
            f"{r.value:.4f}" if r.value is not None else "",
            f"{r.target:.2f}" if r.target is not None else "",
            r.io_kept[:40],
            ("met" if r.met else "missed") + (f": {r.why}" if r.why else ""),
            f"{r.seconds:.0f}",
        )
    Console(width=260).print(table)


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="cache of built teachers/data and the runs")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    ap.add_argument("--single-input", action="store_true", help="only the cases the old engine could attempt")
    ap.add_argument("--profiles", default=f"{MOBILE},{MCU}")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--family", default=None, help="options.student.family of every job (e.g. derived)")
    ap.add_argument("--reduction", type=float, default=None, help="options.student.reduction (derived)")
    ap.add_argument(
        "--transfer", type=int, default=None, help="transfer-set size of the generated cases (magika, blazeface, vad)"
    )
    ap.add_argument(
        "--every-artifact", action="store_true", help="judge every artifact of each job, not only the device one"
    )
    ap.add_argument("--heldout", type=int, default=None, help="held-out-set size of the generated cases")
    ap.add_argument(
        "--option", action="append", default=[], metavar="KEY=JSON",
        help="one more job option for every job, e.g. calibration_samples=2048 (repeatable)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="edgedistill-conformance-"))
    work.mkdir(parents=True, exist_ok=True)
    names = list(SINGLE_INPUT) if args.single_input else [c for c in args.cases.split(",") if c]
    profiles = [p for p in args.profiles.split(",") if p]
    options: dict[str, Any] = {"epochs": args.epochs, "seed": 0, "device": args.device}
    if args.family or args.reduction:
        options["student"] = {k: v for k, v in (("family", args.family), ("reduction", args.reduction)) if v}
    options.update(parse_options(args.option))
    rows: list[Row] = []
    for name in names:
        try:
            t0 = time.perf_counter()
            case = build_case(name, work, args.transfer, args.heldout)
            print(f"{name}: material ready in {time.perf_counter() - t0:.1f} s", flush=True)
        except Exception as exc:
            rows.append(Row(name, "-", why=f"material: {type(exc).__name__}: {_first_line(exc)}"))
            continue
        for profile in profiles:
            if profile not in case.profiles:
                continue
            got = run_case(case, profile, work, options, every=args.every_artifact)
            for r in got:
                print(f"  {r.case}/{r.profile} {r.output}: {r.metric} {r.value} -> {r.why or 'met'}", flush=True)
            rows += got
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "bytes_x": r.bytes_x} for r in rows], indent=1))
    return rows


if __name__ == "__main__":
    main()
