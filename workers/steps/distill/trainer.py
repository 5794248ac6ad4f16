"""The student's training loop on cached teacher outputs.

All tensors live on the training device for the whole run and batches are slices of a pre-shuffled
index tensor: no DataLoader and no per-step host->device copies, which dominate for tiny students
(toolchain.md). Early stopping keeps the weights with the best validation fidelity (top-1
agreement with the teacher; R^2 against the teacher's outputs for regression)."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgedistill.contracts.spec import JobOptions
from edgedistill.workers.steps.distill.losses import WeightedSum

if TYPE_CHECKING:
    from edgedistill.workers.steps.distill.features import FeaturePlan, StudentHooks

EVAL_BATCH = 4096
CHECK_EVERY_STEPS = 200  # cancel checks inside long epochs (the time limit is checked every step)
# A loss spike: an epoch whose mean training loss is non-finite or more than SPIKE_FACTOR times the
# previous epoch's, or whose loss rose while validation fell below the first epoch's (the run lost all
# it learned after one epoch). BlazeFace derived student: seed 1 went 1.26 -> 18.99 at epoch 11 and
# crawled from 0.39 to 0.62 val fidelity (after 0.75) until patience stopped it at epoch 25, AdamW's
# second moments inflated by that epoch; seed 2's loss rose only 1.23 -> 1.38 at epoch 29 but val
# fell 0.79 -> 0.54 (epoch 1: 0.57) and never came back. The epoch is rewound (weights, optimizer,
# loss parameters) and the learning rate cut.
SPIKE_FACTOR = 3.0
SPIKE_LR_CUT = 0.5
MAX_ROLLBACKS = 3


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 15
    seed: int = 0
    max_train_seconds: float | None = None
    device: str = "cpu"

    @classmethod
    def from_options(cls, opts: JobOptions, device: str) -> TrainConfig:
        return cls(
            epochs=opts.epochs,
            batch_size=opts.batch_size,
            learning_rate=opts.learning_rate,
            weight_decay=opts.weight_decay,
            patience=opts.patience,
            seed=opts.seed,
            max_train_seconds=opts.max_train_seconds,
            device=device,
        )


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    epochs: int
    train_loss: float
    val_fidelity: float
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class TrainResult:
    curve: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_fidelity: float = float("-inf")
    best_val_accuracy: float | None = None
    stopped_early: bool = False
    stop_reason: str = "completed all epochs"
    seconds: float = 0.0
    train_seconds: float = 0.0
    samples_seen: int = 0
    rollbacks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.train_seconds if self.train_seconds > 0 else 0.0

    def rollback_warning(self, phase: str) -> str | None:
        """The report's warning for the spiked epochs this training undid (None when none was)."""
        if not self.rollbacks:
            return None
        epochs = ", ".join(str(r["epoch"]) for r in self.rollbacks)
        return f"{phase} loss spiked at epoch(s) {epochs}; each such epoch was undone and the learning rate halved"

    def as_dict(self) -> dict[str, Any]:
        return {
            "curve": [asdict(r) for r in self.curve],
            "epochs_run": len(self.curve),
            "best_epoch": self.best_epoch,
            "best_val_fidelity": self.best_val_fidelity,
            "best_val_accuracy": self.best_val_accuracy,
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "seconds": round(self.seconds, 3),
            "samples_per_second": round(self.samples_per_second, 1),
            "rollbacks": list(self.rollbacks),
        }


@dataclass(frozen=True)
class SplitTensors:
    """One split's arrays as tensors on the training device; y is None without labels. feats holds the
    cached teacher features (float16, one tensor per feature pair) and prev an earlier student's
    outputs (lifelong runs), when the loss needs them."""

    x: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor | None
    feats: tuple[torch.Tensor, ...] = ()
    prev: torch.Tensor | None = None
    # multi-input / multi-output runs: every input in signature order (x is xs[0]) and the teacher's
    # output for every student output (t is ts[0]); empty for the single-input fast path
    xs: tuple[torch.Tensor, ...] = ()
    ts: tuple[torch.Tensor, ...] = ()

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        return self.xs or (self.x,)

    @classmethod
    def from_outputs(
        cls,
        inputs: Sequence[np.ndarray],
        teacher: Sequence[np.ndarray],
        y: np.ndarray | None,
        *,
        task: str,
        device: torch.device,
    ) -> SplitTensors:
        """Inputs keep integer dtypes (token ids as int64), floats become float32; teacher outputs float32."""
        xs = tuple(
            torch.as_tensor(np.ascontiguousarray(a, dtype=np.int64 if a.dtype.kind in "iub" else np.float32)).to(device)
            for a in inputs
        )
        ts = tuple(torch.as_tensor(np.ascontiguousarray(t, dtype=np.float32)).to(device) for t in teacher)
        yt = None
        if y is not None:
            yt = torch.as_tensor(y, dtype=torch.int64 if task == "classification" else torch.float32).to(device)
        return cls(x=xs[0], t=ts[0], y=yt, xs=xs, ts=ts)

    @classmethod
    def from_numpy(
        cls,
        x: np.ndarray,
        t: np.ndarray,
        y: np.ndarray | None,
        *,
        task: str,
        device: torch.device,
        feats: Sequence[np.ndarray] = (),
        prev: np.ndarray | None = None,
    ) -> SplitTensors:
        yt = None
        if y is not None:
            yt = torch.as_tensor(y, dtype=torch.int64 if task == "classification" else torch.float32)
            yt = yt.to(device)
        return cls(
            x=torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).to(device),
            t=torch.as_tensor(np.ascontiguousarray(t, dtype=np.float32)).to(device),
            y=yt,
            feats=tuple(torch.as_tensor(f).to(device) for f in feats),
            prev=None if prev is None else torch.as_tensor(np.ascontiguousarray(prev, dtype=np.float32)).to(device),
        )


def as_outputs(out: Any) -> tuple[torch.Tensor, ...]:
    """A student's result as a tuple (the contract allows a bare tensor for one output)."""
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Single-input, first-output view of predict_outputs."""
    return predict_outputs(model, (x,))[0]


@torch.inference_mode()
def predict_outputs(model: nn.Module, xs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    was_training = model.training
    model.eval()
    n = int(xs[0].shape[0])
    parts = [as_outputs(model(*(x[i : i + EVAL_BATCH] for x in xs))) for i in range(0, n, EVAL_BATCH)]
    model.train(was_training)
    return tuple(torch.cat([p[j] for p in parts]) for j in range(len(parts[0])))


def fidelity(student_out: torch.Tensor, teacher_out: torch.Tensor, task: str) -> float:
    """Classification: top-1 agreement. Regression: R^2 of the student against the teacher."""
    if task == "classification":
        return float((student_out.argmax(1) == teacher_out.argmax(1)).float().mean())
    sse = torch.sum((student_out - teacher_out) ** 2)
    sst = torch.sum((teacher_out - teacher_out.mean(0)) ** 2).clamp_min(1e-12)
    return float(1.0 - sse / sst)


def accuracy(student_out: torch.Tensor, labels: torch.Tensor | None, task: str) -> float | None:
    if labels is None or task != "classification":
        return None
    return float((student_out.argmax(1) == labels).float().mean())


def _cosine(total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return factor


def train_student(
    student: nn.Module,
    loss_fn: WeightedSum,
    *,
    task: str,
    train: SplitTensors,
    val: SplitTensors,
    config: TrainConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
    features: FeaturePlan | None = None,
    score_fn: Callable[[tuple[torch.Tensor, ...], SplitTensors], tuple[float, float | None]] | None = None,
) -> TrainResult:
    """Train in place with AdamW + cosine decay; returns the curve and loads the best weights.

    With feature losses, `features` (features.plan_features) names the student layers whose outputs
    are hooked during training and train.feats holds the matching cached teacher features; the
    losses' own parameters (FitNets regressors) train alongside and are not part of the student.

    Multi-input / multi-output runs pass splits built with SplitTensors.from_outputs and a score_fn
    (raw student outputs, the split -> (validation headline, accuracy)); the batch then also holds
    "student_outputs" / "teacher_outputs" (one entry per student output) for the per-output losses.

    Usable on its own (the benchmark trains a labels-only baseline with a `ce`-only loss)."""
    started = time.monotonic()
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    student.to(device).train()
    needs_features = loss_fn.needs_features
    if needs_features:
        if features is None or len(train.feats) != len(features.pairs):
            raise ValueError("feature losses need a FeaturePlan and cached teacher features for the train split")
        loss_fn.setup(features.shapes)
    loss_fn.to(device)
    needs_prev = "prev_logits" in loss_fn.requires
    if needs_prev and train.prev is None:
        raise ValueError("the loss needs an earlier student's outputs (train.prev)")

    n = int(train.x.shape[0])
    bs = min(config.batch_size, n)
    steps_per_epoch = max(1, n // bs if n % bs < 2 else math.ceil(n / bs))  # never a 1-sample batch (BN)
    params = list(student.parameters()) + list(loss_fn.parameters())
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(config.epochs * steps_per_epoch))
    needs_labels = "labels" in loss_fn.requires

    result = TrainResult()
    deadline = started + config.max_train_seconds if config.max_train_seconds else None
    hooks = features.hooks(student) if needs_features and features is not None else contextlib.nullcontext()
    with hooks as taps:
        stopped = _epochs(
            student, loss_fn, task=task, train=train, val=val, config=config, opt=opt, sched=sched, gen=gen,
            bs=bs, steps_per_epoch=steps_per_epoch, needs_labels=needs_labels, needs_prev=needs_prev,
            taps=taps, result=result, deadline=deadline, on_epoch=on_epoch, check_cancel=check_cancel,
            score_fn=score_fn,
        )  # fmt: skip
    student.load_state_dict(stopped)
    student.eval()
    result.seconds = time.monotonic() - started
    return result


def _epochs(
    student: nn.Module,
    loss_fn: WeightedSum,
    *,
    task: str,
    train: SplitTensors,
    val: SplitTensors,
    config: TrainConfig,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
    bs: int,
    steps_per_epoch: int,
    needs_labels: bool,
    needs_prev: bool,
    taps: StudentHooks | None,
    result: TrainResult,
    deadline: float | None,
    on_epoch: Callable[[EpochRecord], None] | None,
    check_cancel: Callable[[], None] | None,
    score_fn: Callable[[tuple[torch.Tensor, ...], SplitTensors], tuple[float, float | None]] | None = None,
) -> dict[str, Any]:
    """The epoch loop; returns the best state dict."""
    device = torch.device(config.device)
    n = int(train.x.shape[0])
    best_state = copy.deepcopy(student.state_dict())
    stale = 0
    out_of_time = False
    last_loss: float | None = None
    first_val: float | None = None  # the first kept epoch's validation fidelity
    for epoch in range(1, config.epochs + 1):
        if check_cancel:
            check_cancel()
        rewind = _snapshot(student, opt, loss_fn)
        epoch_start = time.monotonic()
        perm = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        seen = 0
        for step in range(steps_per_epoch):
            idx = perm[step * bs : (step + 1) * bs] if step < steps_per_epoch - 1 else perm[step * bs :]
            if train.xs:
                outs = as_outputs(student(*(x.index_select(0, idx) for x in train.xs)))
                teach = [t.index_select(0, idx) for t in train.ts]
                batch: dict[str, Any] = {
                    "student_outputs": outs,
                    "teacher_outputs": teach,
                    "student_logits": outs[0],
                    "teacher_logits": teach[0],
                }
            else:
                batch = {
                    "student_logits": as_outputs(student(train.x.index_select(0, idx)))[0],
                    "teacher_logits": train.t.index_select(0, idx),
                }
            if needs_labels and train.y is not None:
                batch["labels"] = train.y.index_select(0, idx)
            if taps is not None:
                batch["student_features"] = taps.collect()
                batch["teacher_features"] = [f.index_select(0, idx).float() for f in train.feats]
            if needs_prev and train.prev is not None:
                batch["prev_logits"] = train.prev.index_select(0, idx)
            loss = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach() * idx.numel()  # no .item() per step: it would sync the GPU
            seen += idx.numel()
            if check_cancel and step % CHECK_EVERY_STEPS == CHECK_EVERY_STEPS - 1:
                check_cancel()
            # The clock every step (a monotonic read, no device sync): checked every 200 steps, a
            # 240 s limit ran 500 s at 63 samples/s on Fashion-MNIST (docs/benchmarks.md).
            if deadline is not None and time.monotonic() > deadline:
                out_of_time = True
                break
        result.samples_seen += seen
        result.train_seconds += time.monotonic() - epoch_start

        if score_fn is not None:
            val_fid, val_acc = score_fn(predict_outputs(student, val.inputs), val)
        else:
            out = predict(student, val.x)
            val_fid, val_acc = fidelity(out, val.t, task), accuracy(out, val.y, task)
        record = EpochRecord(
            epoch=epoch,
            epochs=config.epochs,
            train_loss=float(total) / max(seen, 1),
            val_fidelity=val_fid,
            val_accuracy=val_acc,
            lr=float(opt.param_groups[0]["lr"]),
            seconds=time.monotonic() - epoch_start,
        )
        result.curve.append(record)
        if _spiked(record, last_loss, first_val):
            if len(result.rollbacks) >= MAX_ROLLBACKS:
                result.stopped_early = True
                result.stop_reason = (
                    f"training diverged (epoch {epoch} spiked again after {MAX_ROLLBACKS} rewinds with lower "
                    f"learning rates: loss {record.train_loss:.4g}, val fidelity {record.val_fidelity:.4g}); "
                    "kept the best epoch"
                )
                break
            _rewind(rewind, student, opt, sched, loss_fn)
            result.rollbacks.append(
                {
                    "epoch": epoch,
                    "train_loss": record.train_loss if math.isfinite(record.train_loss) else str(record.train_loss),
                    "previous_loss": last_loss,
                    "val_fidelity": record.val_fidelity if math.isfinite(record.val_fidelity) else None,
                    "lr_scale": SPIKE_LR_CUT ** (len(result.rollbacks) + 1),
                }
            )
            stale += 1  # the epoch is undone: it gained nothing
        else:
            last_loss = record.train_loss
            if record.val_fidelity > result.best_val_fidelity + 1e-9:
                first_val = record.val_fidelity if first_val is None else first_val
                result.best_val_fidelity = record.val_fidelity
                result.best_val_accuracy = record.val_accuracy
                result.best_epoch = epoch
                best_state = copy.deepcopy(student.state_dict())
                stale = 0
            else:
                stale += 1
        if on_epoch:
            on_epoch(record)
        if out_of_time or (deadline is not None and time.monotonic() > deadline):
            result.stopped_early = epoch < config.epochs
            result.stop_reason = f"reached max_train_seconds={config.max_train_seconds:g}"
            break
        if stale >= config.patience and epoch < config.epochs:
            result.stopped_early = True
            result.stop_reason = f"no validation fidelity gain for {config.patience} epochs"
            break
    return best_state


def _spiked(record: EpochRecord, previous: float | None, first_val: float | None) -> bool:
    loss = record.train_loss
    if not math.isfinite(loss):
        return True
    if previous is None or previous <= 0:
        return False
    if loss > SPIKE_FACTOR * previous:
        return True
    return first_val is not None and loss > previous and record.val_fidelity < first_val


def _snapshot(student: nn.Module, opt: torch.optim.Optimizer, loss_fn: WeightedSum) -> tuple[Any, Any, Any]:
    """What an epoch changes: copied before it so a spike can be undone (students are small)."""
    return (
        copy.deepcopy(student.state_dict()),
        copy.deepcopy(opt.state_dict()),
        copy.deepcopy(loss_fn.state_dict()),
    )


def _rewind(
    saved: tuple[Any, Any, Any],
    student: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: WeightedSum,
) -> None:
    """Undo the epoch and cut the learning rate for the rest of the schedule (the cosine goes on from
    where it was: the rewound epoch still counts)."""
    student.load_state_dict(saved[0])
    opt.load_state_dict(saved[1])
    loss_fn.load_state_dict(saved[2])
    sched.base_lrs = [lr * SPIKE_LR_CUT for lr in sched.base_lrs]
