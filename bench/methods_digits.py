"""Distillation methods benchmark (issue 6) on scikit-learn's digits.

A ~0.63 M-parameter CNN teacher (bench/digits.py, saved as TorchScript so its intermediate features
and BatchNorm statistics are read from its graph) is distilled into one fixed student (ds_cnn2d,
width 8, depth 3: ~2.3 k parameters) by every method, with the engine's own code (train_student /
plan_features / train_data_free / prepare_qat / search_and_train, no export pipeline). Accuracy is
measured on a held-out test split (20 % of digits) that no teacher, student, validation or
calibration ever sees. Two transfer settings: the full transfer set (the other 80 %) and 10 % of it;
each split 85 / 15 into train / validation (best-validation-fidelity epoch kept, as the engine does).
Every method: same student, same epochs, same optimiser; mean ± std over the seeds.

Extra rows: data-free with zero real images (the teacher's graph only); QAT-KD (int8 accuracy of
post-training quantization vs quantization-aware distillation, both PT2E int8 simulated in torch);
lifelong (half the transfer set first, then the other half, with and without LwF, accuracy on the
test split); NAS (the searched student, a different architecture: its size is given).

    .venv/bin/python -m bench.methods_digits [--seeds 3] [--epochs 40] [--out figures.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from bench.digits import accuracy, digits_split, export_teacher, train_teacher
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.spec import METHODS, DataFreeOptions, JobOptions, LossTerm, PipelineSpec
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.data import TransferData, make_splits
from edgedistill.workers.steps.distill.fitting import fit
from edgedistill.workers.steps.distill.methods import METHODS as METHOD_TABLE
from edgedistill.workers.steps.distill.methods import default_terms
from edgedistill.workers.steps.distill.trainer import TrainConfig, predict
from edgedistill.workers.steps.students import StudentArch, build_module, estimate
from edgedistill.workers.steps.teacher import load_teacher

STUDENT = StudentArch("ds_cnn2d", (1, 8, 8), 10, 8, 3)
LOSS_METHODS = ("labels_only", "kd", "fitnet", "at", "rkd", "sp", "relational", "hybrid")
assert set(LOSS_METHODS) <= set(METHODS)


def _subset(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if fraction >= 1:
        return x, y
    from sklearn.model_selection import train_test_split

    xs, _, ys, _ = train_test_split(x, y, train_size=fraction, random_state=seed, stratify=y)
    return xs, ys


def _state(
    teacher: Any, x: np.ndarray, y: np.ndarray, seed: int, options: JobOptions, work: Path
) -> tuple[RunContext, RunState]:
    splits, strat = make_splits(len(y), y, val_fraction=0.15, test_fraction=0.01, seed=seed)
    # the engine's test split is not used here: the benchmark's test set is the held-out digits split
    splits = {"train": splits["train"], "val": splits["val"], "test": splits["test"]}
    data = TransferData(x=x, y=y, splits=splits, modality="image", task="classification", num_outputs=10,
                        stratified=strat)  # fmt: skip
    outs = teacher.predict(x)
    state = RunState()
    state.data, state.teacher = data, teacher
    state.teacher_outputs = {k: outs[v] for k, v in splits.items()}
    state.student_arch = {**STUDENT.to_dict(), "params": estimate(STUDENT).params}
    spec = PipelineSpec(teacher_path=teacher.path, data_path=None, profile=builtin_profiles()["mcu-cortex-m4"],
                        options=options, out_dir=work / "out")  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    return RunContext(spec=spec, work_dir=work), state


def _student(seed: int, arch: StudentArch = STUDENT) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_module(arch)


def _test_acc(model: torch.nn.Module, x_test: np.ndarray, y_test: np.ndarray) -> float:
    return accuracy(predict(model, torch.from_numpy(x_test)).numpy(), y_test)


def _terms(method: str, opts: JobOptions) -> list[LossTerm]:
    return default_terms(method, task="classification", has_labels=True, alpha=opts.alpha, temperature=opts.temperature)


def run_losses(
    ctx: RunContext, state: RunState, seed: int, opts: JobOptions, x_test: np.ndarray, y_test: np.ndarray
) -> dict[str, float]:
    out: dict[str, float] = {}
    cache = None
    for method in LOSS_METHODS:
        student = _student(seed)
        cfg = TrainConfig.from_options(opts, "cpu")
        fitted = fit(ctx, state, student, _terms(method, opts), cfg, features=cache)
        if fitted.features is not None:
            cache = fitted.features if cache is None else cache  # same student arch: same pairs, one cache
        out[method] = _test_acc(student, x_test, y_test)
    return out


def run_qat(
    ctx: RunContext, state: RunState, seed: int, opts: JobOptions, x_test: np.ndarray, y_test: np.ndarray
) -> dict[str, float]:
    """KD student -> int8 by PTQ (PT2E, calibrated on 256 training samples) vs by QAT-KD."""
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    from edgedistill.runtimes.common import to_model_layout
    from edgedistill.workers.steps.distill.qat import _layout_module, prepare_qat
    from edgedistill.workers.steps.distill.qat_graph import copy_back, fuse_batchnorm
    from edgedistill.workers.steps.export_tflite import channel_last_module

    student = _student(seed)
    fit(ctx, state, student, _terms("kd", opts), TrainConfig.from_options(opts, "cpu"))
    student.eval()
    x_train = state.data.x_of("train")
    calib = x_train[np.random.default_rng(seed).choice(len(x_train), size=min(256, len(x_train)), replace=False)]

    def int8_acc(graph: Any, layout: str | None) -> float:
        conv = quantize_pt2e.convert_pt2e(copy.deepcopy(graph), fold_quantize=False)
        move_exported_model_to_eval(conv)
        with torch.no_grad():
            out = conv(torch.from_numpy(to_model_layout(x_test, layout)))
        return accuracy(out.numpy(), y_test)

    # PTQ on the same BN-folded, channel-last graph the TFLite export quantizes
    module, layout = channel_last_module(fuse_batchnorm(student), "image")
    q = pt2e_quantizer.PT2EQuantizer().set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    xl = torch.from_numpy(to_model_layout(calib, layout))
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    graph = torch.export.export(module, (xl[:2],), dynamic_shapes=(({0: batch},),)).module()
    graph = quantize_pt2e.prepare_pt2e(graph, q)
    move_exported_model_to_eval(graph)
    with torch.no_grad():
        graph(xl)
    ptq = int8_acc(graph, layout)

    qat, fused = prepare_qat(student, "image", x_train)
    adapter = _layout_module(qat.graph, qat.layout)
    cfg = replace(TrainConfig.from_options(opts, "cpu"), epochs=opts.qat_epochs, learning_rate=opts.qat_learning_rate,
                  patience=opts.qat_epochs)  # fmt: skip
    fit(ctx, state, adapter, _terms("kd", opts), cfg)
    adapter.eval()
    return {
        "kd_fp32": _test_acc(student, x_test, y_test),
        "kd_ptq_int8": ptq,
        "qat_kd_int8": int8_acc(qat.graph, qat.layout),
        "qat_kd_fp32": _test_acc(copy_back(qat.graph, fused), x_test, y_test),
    }


def run_lifelong(
    ctx: RunContext, state: RunState, seed: int, opts: JobOptions, x_test: np.ndarray, y_test: np.ndarray
) -> dict[str, float]:
    """Old = first half of the training rows, new = second half. Continue the old student on the new half
    with KD only vs KD + LwF (the earlier student's outputs); accuracy on the test split and on the old rows."""
    data = state.data
    train = data.splits["train"]
    half = len(train) // 2
    old_idx, new_idx = train[:half], train[half:]
    outs = {**state.teacher_outputs}

    all_out = np.empty((len(data.x), outs["train"].shape[1]), dtype=np.float32)
    for k, v in data.splits.items():
        all_out[v] = outs[k]
    old_state, new_state = copy.copy(state), copy.copy(state)
    old_state.data = replace(data, splits={**data.splits, "train": old_idx})
    old_state.teacher_outputs = {**outs, "train": all_out[old_idx]}
    new_state.data = replace(data, splits={**data.splits, "train": new_idx})
    new_state.teacher_outputs = {**outs, "train": all_out[new_idx]}
    cfg = TrainConfig.from_options(opts, "cpu")
    old = _student(seed)
    fit(ctx, old_state, old, _terms("kd", opts), cfg)
    old.eval()
    x_old, y_old = data.x[old_idx], data.y[old_idx]  # type: ignore[index]
    prev = {k: predict(old, torch.from_numpy(new_state.data.x_of(k))).numpy() for k in ("train", "val", "test")}
    res = {"old_student_test": _test_acc(old, x_test, y_test), "old_student_old_rows": _test_acc(old, x_old, y_old)}
    for name, terms, p in (
        ("continue_kd", _terms("kd", opts), None),
        ("continue_kd_lwf", _terms("lifelong", opts), prev),
    ):
        s = copy.deepcopy(old).train()
        fit(ctx, new_state, s, terms, cfg, prev=p)
        res[f"{name}_test"] = _test_acc(s, x_test, y_test)
        res[f"{name}_old_rows"] = _test_acc(s, x_old, y_old)
        with torch.no_grad():
            res[f"{name}_agree_old_student"] = float(
                (predict(s, torch.from_numpy(x_old)).argmax(1) == predict(old, torch.from_numpy(x_old)).argmax(1))
                .float()
                .mean()
            )
    return res


def run_data_free(
    teacher: Any, seed: int, opts: JobOptions, x_test: np.ndarray, y_test: np.ndarray
) -> dict[str, float]:
    from edgedistill.workers.steps.distill.datafree import Judge, train_data_free
    from edgedistill.workers.steps.distill.losses import build_loss

    probe = np.random.default_rng(seed).uniform(0, 1, size=(4, 1, 8, 8)).astype(np.float32)
    judge = Judge(teacher, probe)
    student = _student(seed)
    loss = build_loss(_terms("data_free", opts), task="classification", available={"student_logits", "teacher_logits"})
    t0 = time.perf_counter()
    train_data_free(
        student, judge, loss, shape=(1, 8, 8), task="classification", opts=opts.data_free, epochs=opts.epochs,
        batch_size=opts.batch_size, learning_rate=opts.learning_rate, weight_decay=opts.weight_decay, seed=seed,
    )  # fmt: skip
    return {"data_free": _test_acc(student, x_test, y_test), "seconds": time.perf_counter() - t0}


def run_nas(
    ctx: RunContext, state: RunState, seed: int, opts: JobOptions, x_test: np.ndarray, y_test: np.ndarray
) -> dict[str, Any]:
    from edgedistill.workers.steps.distill.methods import plan_for
    from edgedistill.workers.steps.distill.nas import search_and_train

    ctx.spec.options = opts  # type: ignore[misc]
    state.student = _student(seed)
    n_train = len(state.data.splits["train"])
    plan = plan_for(
        opts, task="classification", has_labels=True, modality="image", train_samples=n_train, num_outputs=10,
        has_data=True, has_init=False,
    )  # fmt: skip
    student, _ = search_and_train(ctx, state, plan, 0, 1)
    return {
        "nas": _test_acc(student, x_test, y_test),
        "nas_params": float(state.student_arch["params"]),
        "nas_chosen": state.distillation["nas"]["chosen"],
    }


def _ms(values: list[float]) -> str:
    a = 100 * np.asarray(values, dtype=float)
    return f"{a.mean():.2f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--teacher-epochs", type=int, default=20)
    ap.add_argument("--df-epochs", type=int, default=20, help="data-free epochs (x --df-steps generator steps)")
    ap.add_argument("--df-steps", type=int, default=40)
    ap.add_argument("--nas-budget", type=float, default=60.0, help="seconds per NAS run (full setting)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    console = Console(width=200)
    started = time.perf_counter()

    split = digits_split(seed=0)
    t0 = time.perf_counter()
    teacher_net = train_teacher(split.x_rest, split.y_rest, epochs=args.teacher_epochs, seed=0)
    with torch.no_grad():
        teacher_acc = accuracy(teacher_net(torch.from_numpy(split.x_test)).numpy(), split.y_test)
    tmp = Path(tempfile.mkdtemp(prefix="edgedistill-methods-"))
    files = export_teacher(teacher_net, tmp / "teacher")
    teacher = load_teacher(files["torchscript"])
    console.print(f"teacher: {sum(p.numel() for p in teacher_net.parameters()):,} params, test acc "
                  f"{teacher_acc:.4f}, trained in {time.perf_counter() - t0:.0f} s")  # fmt: skip

    base = JobOptions(epochs=args.epochs, batch_size=32, learning_rate=1e-2, patience=args.epochs, device="cpu",
                      data_free=DataFreeOptions(input_range=(0.0, 1.0), steps_per_epoch=args.df_steps))  # fmt: skip
    figures: dict[str, Any] = {"teacher_acc": teacher_acc, "settings": {}, "args": vars(args) | {"out": str(args.out)}}
    timings: dict[str, float] = {}
    for setting, fraction in (("full", 1.0), ("10%", 0.1)):
        rows: dict[str, list[float]] = {}
        extra: dict[str, list[Any]] = {}
        for seed in range(args.seeds):
            x, y = _subset(split.x_rest, split.y_rest, fraction, seed)
            opts = base.model_copy(update={"seed": seed})
            ctx, state = _state(teacher, x, y, seed, opts, tmp / f"{setting}-{seed}")
            t = time.perf_counter()
            for k, v in run_losses(ctx, state, seed, opts, split.x_test, split.y_test).items():
                rows.setdefault(k, []).append(v)
            timings[f"losses {setting}"] = timings.get(f"losses {setting}", 0) + time.perf_counter() - t
            t = time.perf_counter()
            for k, v in run_qat(ctx, state, seed, opts, split.x_test, split.y_test).items():
                extra.setdefault(k, []).append(v)
            timings[f"qat {setting}"] = timings.get(f"qat {setting}", 0) + time.perf_counter() - t
            t = time.perf_counter()
            for k, v in run_lifelong(ctx, state, seed, opts, split.x_test, split.y_test).items():
                extra.setdefault(k, []).append(v)
            timings[f"lifelong {setting}"] = timings.get(f"lifelong {setting}", 0) + time.perf_counter() - t
            if setting == "full":
                t = time.perf_counter()
                nas_opts = opts.model_copy(update={"nas_time_budget_s": args.nas_budget, "nas_max_candidates": 6,
                                                   "nas_finalists": 2})  # fmt: skip
                for k, v in run_nas(ctx, state, seed, nas_opts, split.x_test, split.y_test).items():
                    extra.setdefault(k, []).append(v)
                timings["nas"] = timings.get("nas", 0) + time.perf_counter() - t
            console.print(f"{setting} seed {seed}: {time.perf_counter() - started:.0f} s so far")
        figures["settings"][setting] = {"train_samples": len(state.data.splits["train"]), "rows": rows, "extra": extra}

    df: list[float] = []
    t = time.perf_counter()
    for seed in range(args.seeds):
        df_opts = base.model_copy(update={"seed": seed, "epochs": args.df_epochs, "batch_size": 64})
        df.append(run_data_free(teacher, seed, df_opts, split.x_test, split.y_test)["data_free"])
    timings["data_free"] = time.perf_counter() - t
    figures["data_free"] = df
    figures["timings_s"] = timings

    full, low = figures["settings"]["full"], figures["settings"]["10%"]
    table = Table(title=f"digits, held-out test accuracy (%) — teacher {100 * teacher_acc:.2f}; student "
                        f"{STUDENT.label()} ({estimate(STUDENT).params:,} params); {args.epochs} epochs; "
                        f"mean ± std over {args.seeds} seeds")  # fmt: skip
    for col in ("method", f"full transfer set ({full['train_samples']} train)",
                f"10 % ({low['train_samples']} train)", "what"):  # fmt: skip
        table.add_column(col)
    for m in LOSS_METHODS:
        table.add_row(m, _ms(full["rows"][m]), _ms(low["rows"][m]), METHOD_TABLE[m].summary)
    steps = f"{args.df_epochs}x{args.df_steps} generator steps, 5 student steps each; teacher TorchScript"
    table.add_row("data_free (0 real images)", _ms(df), "—", steps)
    for key, what in (
        ("kd_ptq_int8", "KD student, post-training int8 (PT2E, simulated)"),
        ("qat_kd_int8", f"QAT-KD int8 ({base.qat_epochs} more epochs with fake quant), same KD student"),
        ("continue_kd_test", "lifelong: half the data, then the other half with KD only"),
        ("continue_kd_lwf_test", "lifelong: ... with KD + LwF from the earlier student"),
    ):
        table.add_row(key, _ms(full["extra"][key]), _ms(low["extra"][key]), what)
    for key, what in (
        ("continue_kd_agree_old_student", "agreement with the earlier student on the old rows, KD only"),
        ("continue_kd_lwf_agree_old_student", "... KD + LwF"),
    ):
        table.add_row(key, _ms(full["extra"][key]), _ms(low["extra"][key]), what)
    chosen = zip(full["extra"]["nas_chosen"], full["extra"]["nas_params"], strict=True)
    nas_params = ", ".join(f"{c} ({int(p):,} params)" for c, p in chosen)
    table.add_row(
        "nas", _ms(full["extra"]["nas"]), "—", f"searched students ({args.nas_budget:g} s budget): {nas_params}"
    )
    console.print(table)
    console.print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    console.print(f"total {time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
