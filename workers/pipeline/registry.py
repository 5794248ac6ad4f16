"""Step name -> "module:Class". Imports happen only when a step is asked for."""

from __future__ import annotations

import importlib

from edgedistill.workers.pipeline.base import Step

STEPS: dict[str, str] = {
    "load_teacher": "edgedistill.workers.steps.load_teacher:LoadTeacher",
    "load_data": "edgedistill.workers.steps.load_data:LoadData",
    "build_student": "edgedistill.workers.steps.build_student:BuildStudent",
    "distill": "edgedistill.workers.steps.distill.step:Distill",
    "qat_kd": "edgedistill.workers.steps.distill.qat:QatKD",
    "export_onnx": "edgedistill.workers.steps.export_onnx:ExportOnnx",
    "quantize_onnx": "edgedistill.workers.steps.quantize:QuantizeOnnx",
    "export_tflite": "edgedistill.workers.steps.export_tflite:ExportTflite",
    "export_c_array": "edgedistill.workers.steps.mcu:ExportCArray",
    "verify": "edgedistill.workers.steps.verify:Verify",
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
