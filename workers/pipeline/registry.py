"""Step name -> "module:Class". Imports happen only when a step is asked for."""

from __future__ import annotations

import importlib

from workers.pipeline.base import Step

STEPS: dict[str, str] = {
    "load_teacher": "workers.steps.load_teacher:LoadTeacher",
    "load_data": "workers.steps.load_data:LoadData",
    "build_student": "workers.steps.build_student:BuildStudent",
    "distill": "workers.steps.distill.step:Distill",
    "qat_kd": "workers.steps.distill.qat:QatKD",
    "export_onnx": "workers.steps.export_onnx:ExportOnnx",
    "quantize_onnx": "workers.steps.quantize:QuantizeOnnx",
    "export_tflite": "workers.steps.export_tflite:ExportTflite",
    "export_c_array": "workers.steps.mcu:ExportCArray",
    "verify": "workers.steps.verify:Verify",
    "benchmark": "workers.steps.benchmark:Benchmark",
    "report": "workers.steps.report:Report",
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
