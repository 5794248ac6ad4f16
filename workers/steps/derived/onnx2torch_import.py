"""Import onnx2torch without torchvision.

onnx2torch imports torchvision at module level for two converters only (NonMaxSuppression: torchvision.ops.nms
and box_convert; RoiAlign: torchvision.ops.roi_align). The only torchvision wheels for this torch are CUDA
builds, which fail to import next to the CPU torch ("operator torchvision::nms does not exist"), so
onnx2torch is installed with --no-deps. While onnx2torch is imported, a placeholder `torchvision` whose three
ops raise a readable error stands in; it is removed from sys.modules right after, so every other
`import torchvision` behaves as before. A real, working torchvision is used when one imports."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_MISSING = "needs torchvision, which is not installed with this torch build"


def _unavailable(op: str) -> Any:
    def fn(*_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError(f"the ONNX {op} operator {_MISSING}")

    return fn


def _placeholder() -> dict[str, types.ModuleType]:
    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = _unavailable("NonMaxSuppression")  # type: ignore[attr-defined]
    ops.box_convert = _unavailable("NonMaxSuppression")  # type: ignore[attr-defined]
    ops.roi_align = _unavailable("RoiAlign")  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    return {"torchvision": tv, "torchvision.ops": ops}


def _torchvision_works() -> bool:
    try:
        importlib.import_module("torchvision.ops")
    except Exception:  # missing, or a CUDA build next to a CPU torch (RuntimeError at import)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


def import_onnx2torch() -> types.ModuleType:
    """The onnx2torch package (its converter registry filled), imported once."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    if _torchvision_works():
        return importlib.import_module("onnx2torch")
    stand_in = _placeholder()
    sys.modules.update(stand_in)
    try:
        return importlib.import_module("onnx2torch")
    finally:
        for name, mod in stand_in.items():
            if sys.modules.get(name) is mod:
                del sys.modules[name]
