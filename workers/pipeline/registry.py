"""Step name -> "module:Class": the pipeline's steps. Imports happen only when a step is asked for.

The order they run in, their stages and their restart points are the classes' own declarations
(base.Step); pipeline_order() reads them."""

from __future__ import annotations

import importlib
import itertools
from functools import cache

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.events import STAGES
from edgedistill.workers.pipeline.base import Step

STEPS: dict[str, str] = {
    "load_teacher": "edgedistill.workers.steps.load_teacher:LoadTeacher",
    "load_data": "edgedistill.workers.steps.load_data:LoadData",
    "build_student": "edgedistill.workers.steps.build_student:BuildStudent",
    "distill": "edgedistill.workers.steps.distill.step:Distill",
    "qat_kd": "edgedistill.workers.steps.distill.qat:QatKD",
    # the exporters (export_onnx, quantize_onnx, export_tflite, export_c_array): the artifact-kind registry's
    **artifact_kinds.exporter_steps(),
    "verify": "edgedistill.workers.steps.verify:Verify",
    "quantize_runner_up": "edgedistill.workers.steps.family_race:RunnerUpInt8",
    "benchmark": "edgedistill.workers.steps.benchmark:Benchmark",
    "report": "edgedistill.workers.steps.report:Report",
}


def step_class(name: str) -> type[Step]:
    try:
        target = STEPS[name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}; known: {', '.join(STEPS)}") from None
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, Step)):
        raise TypeError(f"{target} is not a Step")
    return cls


def check_order(classes: list[type[Step]]) -> None:
    """Refuse declarations the runner cannot follow: a registered name that is not the class's, a
    stage outside events.STAGES, two steps at one place, or stages out of STAGES order (each stage
    starts once, and the dashboard shows them in that order)."""
    for cls in classes:
        if cls.stage not in STAGES:
            raise ValueError(f"step {cls.name!r}: stage {cls.stage!r} is not one of {', '.join(STAGES)}")
    orders = [cls.order for cls in classes]
    if len(set(orders)) != len(orders):
        raise ValueError(f"two steps declare the same order: {sorted(orders)}")
    ranked = sorted(classes, key=lambda c: c.order)
    for before, after in itertools.pairwise(ranked):
        if STAGES.index(after.stage) < STAGES.index(before.stage):
            raise ValueError(
                f"step {after.name!r} (stage {after.stage}) runs after {before.name!r} (stage {before.stage}): "
                "stages must follow events.STAGES"
            )


@cache
def pipeline_order() -> tuple[str, ...]:
    """Every registered step's name, in the order the steps declare."""
    classes = []
    for name in STEPS:
        cls = step_class(name)
        if cls.name != name:
            raise ValueError(f"step {name!r} is registered as {STEPS[name]}, whose name is {cls.name!r}")
        classes.append(cls)
    check_order(classes)
    return tuple(cls.name for cls in sorted(classes, key=lambda c: c.order))
