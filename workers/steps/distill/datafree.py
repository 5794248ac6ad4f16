"""Data-free distillation: no transfer set, inputs are synthesised.

A generator G(z) and the student play a game judged by the teacher (Data-Free Adversarial
Distillation, Fang et al. 2019, arXiv:1912.11006; Zero-Shot KT, Micaelli & Storkey 2019,
arXiv:1905.09768): G looks for inputs where student and teacher disagree, the student learns to agree
on them. Per generator step:

    L_G = w_adv * (-mean |t(G(z)) - s(G(z))|)          (DFAD's adversarial term)
        + w_bn  * sum_l ||mu_l(G(z)) - mu_l^BN||_2 + ||var_l(G(z)) - var_l^BN||_2
                                                      (DeepInversion, Yin et al. 2020, arXiv:1912.08795:
                                                       batch statistics at the input of each teacher
                                                       BatchNorm vs its running statistics)
        + w_bal * sum_i pbar_i log pbar_i,  pbar = mean_b softmax(t(G(z)))
                                                      (DAFL's information-entropy term, Chen et al. 2019,
                                                       arXiv:1904.01186: use every class)

then options.data_free.student_steps student steps on fresh G(z) with the method's loss (DFAD's
mean absolute logit difference by default). The BN term needs a torch teacher with BatchNorm
(TorchScript or .pt2); the teacher's gradient w.r.t. its input comes from autograd through its graph
(features.py). ONNX teachers are black boxes for autograd: the generator's gradient of the
adversarial term is then estimated from forward differences along random directions (DFME, Truong
et al. 2021, arXiv:2011.14779): g = d/m sum_j (f(x + eps u_j) - f(x)) / eps u_j.

The input shape comes from the teacher's signature (or options.data_free.input_shape). After
training, options.data_free.synthetic_samples generated inputs (with the teacher's outputs) become
the train/val rows for calibration, QAT and export. Real data given with method data_free is used
only as the test split: the method never trains, validates or calibrates on it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import DataFreeOptions
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.distill.methods import Plan

ZO_EPSILON = 1e-3
GENERATOR_BATCH_MAX = 256


# --------------------------------------------------------------------------------------------------
# generator losses (each tested against its formula)
# --------------------------------------------------------------------------------------------------


def adversarial_loss(student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    """DFAD's generator objective: L = -mean_{b,i} |t_bi - s_bi| (maximise the disagreement)."""
    return -(teacher_out - student_out).abs().mean()


def bn_statistics_loss(feats: list[torch.Tensor], stats: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """DeepInversion's feature-distribution regulariser:
    L = sum_l ||mean(x_l) - mu_l||_2 + ||var(x_l) - sigma2_l||_2, batch statistics over every axis but
    the channels (biased variance, as BatchNorm computes it in training)."""
    total = feats[0].new_zeros(())
    for f, (mu, var) in zip(feats, stats, strict=True):
        dims = [d for d in range(f.dim()) if d != 1]
        m = f.mean(dim=dims)
        v = f.var(dim=dims, unbiased=False)
        total = total + torch.linalg.vector_norm(m - mu.to(f)) + torch.linalg.vector_norm(v - var.to(f))
    return total


def balance_loss(teacher_out: torch.Tensor) -> torch.Tensor:
    """DAFL's information entropy loss: L = -H(pbar) = sum_i pbar_i log pbar_i with pbar the batch mean
    of the teacher's softmax; minimal (-log k) when every class is equally used."""
    p = F.softmax(teacher_out, dim=1).mean(0)
    return (p * torch.log(p.clamp_min(1e-12))).sum()


def zo_gradient(
    f: Any, x: torch.Tensor, *, directions: int, epsilon: float = ZO_EPSILON, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Forward-difference estimate of the gradient of a per-sample function f: (B, ...) -> (B,):
    g_b = d/m sum_j (f(x + eps u_j)_b - f(x)_b) / eps * u_jb, u_jb uniform on the unit sphere (DFME)."""
    b = x.shape[0]
    d = x[0].numel()
    base = f(x)
    grad = torch.zeros_like(x)
    for _ in range(directions):
        u = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        u = u / u.flatten(1).norm(dim=1).clamp_min(1e-12).view(b, *([1] * (x.dim() - 1)))
        grad += ((f(x + epsilon * u) - base) / epsilon).view(b, *([1] * (x.dim() - 1))) * u
    return grad * d / directions


# --------------------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------------------


class Generator(nn.Module):
    """z -> an input of the teacher's shape. Images (C, H, W) and sequences (C, T) (as (C, 1, T)): a
    linear layer to a small grid, then [upsample x2, 3x3 conv, BN, LeakyReLU] blocks and a conv to C
    channels (DFAD's generator, scaled to the input); vectors (F,): an MLP. Outputs are squashed to
    input_range with a sigmoid when it is known, else normalised by an affine-free BatchNorm (DFAD)."""

    def __init__(self, shape: tuple[int, ...], latent: int, input_range: tuple[float, float] | None) -> None:
        super().__init__()
        self.shape, self.latent, self.input_range = tuple(shape), latent, input_range
        self.vector = len(shape) == 1
        out_c = shape[0]
        if self.vector:
            self.body: nn.Module = nn.Sequential(
                nn.Linear(latent, 256), nn.BatchNorm1d(256), nn.LeakyReLU(0.2),
                nn.Linear(256, 256), nn.BatchNorm1d(256), nn.LeakyReLU(0.2), nn.Linear(256, out_c),
            )  # fmt: skip
            self.norm: nn.Module = nn.BatchNorm1d(out_c, affine=False)
            return
        h, w = (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])
        self.hw = (h, w)
        ups = 2 if max(h, w) >= 8 else (1 if max(h, w) >= 4 else 0)
        sh, sw = (1 if h == 1 else 2), 2
        self.init = (max(1, math.ceil(h / sh**ups)), max(1, math.ceil(w / sw**ups)))
        ch = 64 if h * w <= 1024 else 128
        self.fc = nn.Linear(latent, ch * self.init[0] * self.init[1])
        blocks: list[nn.Module] = [nn.BatchNorm2d(ch)]
        for _ in range(ups):
            blocks += [
                nn.Upsample(scale_factor=(sh, sw), mode="nearest"),
                nn.Conv2d(ch, ch, 3, padding=1, bias=False),
                nn.BatchNorm2d(ch),
                nn.LeakyReLU(0.2),
            ]
        blocks += [nn.Conv2d(ch, out_c, 3, padding=1)]
        self.ch = ch
        self.body = nn.Sequential(*blocks)
        self.norm = nn.BatchNorm2d(out_c, affine=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.vector:
            x = self.body(z)
        else:
            x = self.fc(z).view(z.shape[0], self.ch, *self.init)
            x = self.body(x)[:, :, : self.hw[0], : self.hw[1]]
        if self.input_range is not None:
            lo, hi = self.input_range
            x = lo + (hi - lo) * torch.sigmoid(x)
        else:
            x = self.norm(x)
        if len(self.shape) == 2:
            x = x.squeeze(2)  # (B, C, 1, T) -> (B, C, T)
        return x


# --------------------------------------------------------------------------------------------------
# the teacher as judge
# --------------------------------------------------------------------------------------------------


class Judge:
    """The teacher on torch tensors: outputs (no grad), outputs + BN inputs (with grad, torch teachers)."""

    def __init__(self, teacher: Any, probe: np.ndarray) -> None:
        from edgedistill.workers.steps.distill.features import TorchTaps, teacher_taps

        self.teacher = teacher
        self.taps: TorchTaps | None = None
        try:
            taps = teacher_taps(teacher, probe)
            if isinstance(taps, TorchTaps):
                self.taps = taps
        except InputError:
            self.taps = None
        self.bn_names = [n for n, _, _ in self.taps.bn_layers] if self.taps is not None else []
        self.bn_stats = [(m, v) for _, m, v in self.taps.bn_layers] if self.taps is not None else []

    @property
    def differentiable(self) -> bool:
        return self.taps is not None

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.taps is not None:
                out, _ = self.taps.forward(x, [])
                return out.float().reshape(x.shape[0], -1)
        out_np = self.teacher.predict(x.detach().cpu().numpy())
        return torch.from_numpy(out_np.reshape(x.shape[0], -1)).to(x.device)

    def with_grad(self, x: torch.Tensor, bn: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Outputs (and BN inputs when bn) with autograd to x; torch teachers only."""
        assert self.taps is not None
        out, feats = self.taps.forward(x, self.bn_names if bn else [])
        return out.float().reshape(x.shape[0], -1), feats


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


@dataclass
class DataFreeResult:
    curve: list[dict[str, float]]
    seconds: float
    stop_reason: str
    gradient: str
    terms: dict[str, float]


def _cosine(step: int, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


def train_data_free(
    student: nn.Module,
    judge: Judge,
    loss_fn: Any,
    *,
    shape: tuple[int, ...],
    task: str,
    opts: DataFreeOptions,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    seed: int,
    device: str = "cpu",
    max_seconds: float | None = None,
    on_epoch: Any = None,
    check_cancel: Any = None,
) -> tuple[Generator, DataFreeResult]:
    """The DFAD game (module docstring). Returns the trained generator and the curve; trains student in place."""
    started = time.monotonic()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    g = Generator(shape, opts.latent_dim, opts.input_range).to(dev)
    student.to(dev).train()
    loss_fn.to(dev)
    bs = max(2, min(batch_size, GENERATOR_BATCH_MAX))
    opt_s = torch.optim.AdamW(student.parameters(), lr=learning_rate, weight_decay=weight_decay)
    opt_g = torch.optim.Adam(g.parameters(), lr=opts.generator_lr, betas=(0.5, 0.999))
    total = epochs * opts.steps_per_epoch
    sched_s = torch.optim.lr_scheduler.LambdaLR(opt_s, lambda s: _cosine(s, total * opts.student_steps))
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: _cosine(s, total))
    use_bn = judge.differentiable and bool(judge.bn_names) and opts.bn_weight > 0
    use_balance = task == "classification" and opts.balance_weight > 0 and judge.differentiable
    terms = {
        "adversarial": opts.adversarial_weight,
        "bn_statistics": opts.bn_weight if use_bn else 0.0,
        "balance": opts.balance_weight if use_balance else 0.0,
    }
    curve: list[dict[str, float]] = []
    stop = "completed all epochs"

    def z() -> torch.Tensor:
        return torch.randn(bs, opts.latent_dim, generator=gen).to(dev)

    for epoch in range(1, epochs + 1):
        if check_cancel:
            check_cancel()
        sums = {"generator_loss": 0.0, "student_loss": 0.0, "bn_loss": 0.0}
        for _ in range(opts.steps_per_epoch):
            # --- generator step: find inputs where student and teacher disagree ---
            x = g(z())
            s_out = student(x)
            if judge.differentiable:
                t_out, feats = judge.with_grad(x, bn=use_bn)
                loss_g = opts.adversarial_weight * adversarial_loss(s_out, t_out)
                if use_bn:
                    bn = bn_statistics_loss(feats, judge.bn_stats)
                    loss_g = loss_g + opts.bn_weight * bn
                    sums["bn_loss"] += float(bn.detach())
                if use_balance:
                    loss_g = loss_g + opts.balance_weight * balance_loss(t_out)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
            else:
                xd = x.detach()

                def per_sample(inp: torch.Tensor) -> torch.Tensor:
                    with torch.no_grad():
                        return -(judge.outputs(inp) - student(inp)).abs().flatten(1).mean(1)

                grad = zo_gradient(per_sample, xd, directions=opts.zo_directions, generator=gen)
                opt_g.zero_grad(set_to_none=True)
                x.backward(opts.adversarial_weight * grad / x.shape[0])
                loss_g = opts.adversarial_weight * per_sample(xd).mean()
            opt_g.step()
            sched_g.step()
            sums["generator_loss"] += float(loss_g.detach())
            # --- student steps: agree with the teacher on fresh generated inputs ---
            for _ in range(opts.student_steps):
                with torch.no_grad():
                    x = g(z())
                t_out = judge.outputs(x)
                loss_s = loss_fn({"student_logits": student(x), "teacher_logits": t_out})
                opt_s.zero_grad(set_to_none=True)
                loss_s.backward()
                opt_s.step()
                sched_s.step()
            sums["student_loss"] += float(loss_s.detach())
        with torch.no_grad():
            student.eval()
            xv = g(z())
            agree = float((student(xv).argmax(1) == judge.outputs(xv).argmax(1)).float().mean())
            student.train()
        rec = {k: v / opts.steps_per_epoch for k, v in sums.items()}
        rec.update({"epoch": float(epoch), "agreement_on_generated": agree})
        curve.append(rec)
        if on_epoch:
            on_epoch(epoch, epochs, rec)
        if max_seconds is not None and time.monotonic() - started > max_seconds:
            stop = f"reached max_train_seconds={max_seconds:g}"
            break
    student.eval()
    how = "autograd through the teacher's graph" if judge.differentiable else "zeroth-order estimate (DFME)"
    return g, DataFreeResult(curve, time.monotonic() - started, stop, how, terms)


@torch.no_grad()
def synthesize(g: Generator, n: int, seed: int, device: str = "cpu", batch: int = 256) -> np.ndarray:
    """n generated inputs (batch statistics, as during training)."""
    gen = torch.Generator().manual_seed(seed + 1)
    g.train()
    out = []
    for i in range(0, n, batch):
        k = min(batch, n - i)
        zz = torch.randn(max(k, 2), g.latent, generator=gen).to(device)
        out.append(g(zz)[:k].cpu())
    return torch.cat(out).numpy().astype(np.float32)


def distill_data_free(ctx: RunContext, state: RunState, plan: Plan, start: float, end: float) -> None:
    """The distill step for method data_free: train, then replace the (empty) transfer rows by a
    generated set and evaluate (on real held-out data when it was given for evaluation)."""
    from edgedistill.workers.steps.data import TransferData, primary_targets
    from edgedistill.workers.steps.distill.fitting import finish_student
    from edgedistill.workers.steps.distill.losses import build_loss

    opts, data, teacher = ctx.spec.options, state.data, state.teacher
    df = opts.data_free
    shape = tuple(data.sample_shape)
    probe = np.random.default_rng(opts.seed).normal(size=(4, *shape)).astype(np.float32)
    if df.input_range is not None:
        lo, hi = df.input_range
        probe = np.clip(probe * (hi - lo) / 4 + (lo + hi) / 2, lo, hi).astype(np.float32)
    judge = Judge(teacher, probe)
    loss_fn = build_loss(list(plan.terms), task=data.task, available={"student_logits", "teacher_logits"})
    ctx.emit(
        "progress",
        {
            "message": f"data-free distillation: generator vs student, teacher gradients by "
            f"{'autograd' if judge.differentiable else 'zeroth-order estimates'}"
            f"{', BN statistics matching' if judge.bn_names and df.bn_weight > 0 else ''}"
        },
    )

    def on_epoch(epoch: int, epochs: int, rec: dict[str, float]) -> None:
        ctx.emit(
            "epoch",
            {
                "epoch": epoch,
                "epochs": epochs,
                "train_loss": rec["student_loss"],
                "val_fidelity": rec["agreement_on_generated"],
                "val_accuracy": None,
                "lr": None,
                "generator_loss": rec["generator_loss"],
            },
            progress=start + (end - start) * epoch / epochs,
        )

    g, result = train_data_free(
        state.student, judge, loss_fn, shape=shape, task=data.task, opts=df, epochs=opts.epochs,
        batch_size=opts.batch_size, learning_rate=opts.learning_rate, weight_decay=opts.weight_decay,
        seed=opts.seed, device=ctx.torch_device, max_seconds=opts.max_train_seconds,
        on_epoch=on_epoch, check_cancel=ctx.check_cancel,
    )  # fmt: skip
    x_syn = synthesize(g, df.synthetic_samples, opts.seed, ctx.torch_device)
    t_syn = teacher.predict(x_syn).reshape(x_syn.shape[0], -1).astype(np.float32)

    real_test = data.x_of("test")
    has_real = real_test.shape[0] > 0
    n = x_syn.shape[0]
    n_val = max(1, n // 7) if has_real else max(1, round(0.15 * n))
    n_test = 0 if has_real else max(1, round(0.15 * n))
    idx = np.arange(n)
    splits = {"train": idx[: n - n_val - n_test], "val": idx[n - n_val - n_test : n - n_test]}
    y = None
    if has_real:
        splits["test"] = np.arange(n, n + real_test.shape[0])
        x_all = np.concatenate([x_syn, real_test])
        y_real = data.y_of("test")
        if y_real is not None:
            pseudo = t_syn.argmax(1) if data.task == "classification" else t_syn
            y = np.concatenate([pseudo.astype(y_real.dtype), y_real])
        test_t = primary_targets(data, state.teacher_outputs["test"])
        outs = {"train": t_syn[splits["train"]], "val": t_syn[splits["val"]], "test": test_t}
        note = (
            f"accuracy on {real_test.shape[0]:,} real held-out samples that the method never trained, validated "
            "or calibrated on (the data given with method data_free is used only for evaluation)"
        )
    else:
        splits["test"] = idx[n - n_test :]
        x_all = x_syn
        outs = {k: t_syn[v] for k, v in splits.items()}
        note = (
            "no real data was given: accuracy on real data is unavailable; test figures are agreement with the "
            "teacher on generated inputs (give a labelled .npz with method data_free to evaluate on real data)"
        )
    state.data = TransferData(
        x=x_all,
        y=y,
        splits=splits,
        modality=data.modality,
        task=data.task,
        num_outputs=data.num_outputs,
        class_labels=data.class_labels,
        synthetic=True,
        notes=[note, "train/val rows are generated inputs labelled by the teacher"],
    )
    out_name = data.primary_output or state.teacher.io.outputs[0].name
    state.data.primary_output = out_name
    state.data.input_names = data.input_names
    state.teacher_outputs = {split: {out_name: arr} for split, arr in outs.items()}
    if has_real:
        from edgedistill.workers.steps.load_data import teacher_metrics

        state.metrics["teacher"] = teacher_metrics(state.data, outs)
    finish_student(ctx, state, state.student)
    last = result.curve[-1] if result.curve else {}
    state.distillation["data_free"] = {
        "generator": {"params": sum(p.numel() for p in g.parameters()), "latent_dim": df.latent_dim},
        "input_shape": list(shape),
        "input_range": list(df.input_range) if df.input_range else None,
        "teacher_gradient": result.gradient,
        "generator_terms": result.terms,
        "bn_layers_matched": len(judge.bn_names) if result.terms["bn_statistics"] else 0,
        "steps": len(result.curve) * df.steps_per_epoch,
        "student_steps_per_generator_step": df.student_steps,
        "synthetic_samples": int(n),
        "final_agreement_on_generated": last.get("agreement_on_generated"),
        "curve": result.curve,
        "real_data_note": note,
        "real_test_samples": int(real_test.shape[0]),
        "student_test_accuracy_on_real": state.metrics["student_fp32"].get("test_accuracy") if has_real else None,
    }
    state.distillation["loss_terms"] = [
        {"key": t.key, "weight": t.weight, "kwargs": t.kwargs} for t in plan.terms if t.weight > 0
    ]
    state.training = {
        "curve": result.curve,
        "epochs_run": len(result.curve),
        "best_epoch": len(result.curve),
        "stop_reason": result.stop_reason,
        "stopped_early": len(result.curve) < opts.epochs,
        "seconds": round(result.seconds, 3),
        "device": ctx.torch_device,
        "losses": loss_fn.describe(),
        "method": plan.method,
    }
    ctx.emit("progress", {"message": f"data-free distillation done in {result.seconds:.1f} s; {note}"}, progress=end)
