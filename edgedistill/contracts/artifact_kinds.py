"""The artifact kinds a job can produce, defined once: what each file is, which runtime wrapper runs it,
who can measure it, how much each device class wants it, which step writes it and which extra installs
its runtime.

Everything that used to keep its own table reads this one: the engine (verify, benchmark, the device
artifact choice, the report, the probe), the API and dashboard (labels, download order, which kinds a
device may fetch and measure, the profile targets) and the agent (which kinds it can run here).

A new export target is one entry below, its exporter step module, its runtime wrapper under
edgedistill/runtimes/ and its extra in pyproject.toml (docs/architecture.md walks through it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

DeviceClass = Literal["cpu", "mobile", "mcu"]
DEVICE_CLASSES: Final[tuple[DeviceClass, ...]] = ("cpu", "mobile", "mcu")
# host: the worker's benchmark step times it; agent: edgedistill-agent runs and times it on a device;
# tflm: the host TFLite Micro interpreter runs it sample by sample (MCU arena and outputs) and the
# service shows the MCU latency estimate for it.
Measurer = Literal["host", "agent", "tflm"]
Precision = Literal["fp32", "int8"]
IoType = Literal["float", "int8"]


@dataclass(frozen=True)
class ArtifactKind:
    name: str  # the artifact's kind, as stored on the artifact row and in report.json
    label: str  # short name in tables and charts
    description: str  # one line for the profile page's target list
    target: str  # the profile target (profile.targets) that asks for it
    exporter: str  # the pipeline step that writes it (its name in the pipeline's step registry)
    # "module:Class" of that step: the pipeline registers exporters from here, so a new kind's step
    # needs no edit to the step registry (a string, not an import: contracts import no engine code).
    exporter_step: str
    suffix: str  # the file's suffix (the exporter step names the file)
    precision: Precision  # weights and activations
    io: IoType  # what the model's inputs and outputs take: float, or int8 with the model's own scale
    runtime: str | None  # the runtime a deployment runs it in (as measurements name it)
    wrapper: str | None  # module under edgedistill.runtimes that loads and runs it; None: not a model file
    measured_by: frozenset[Measurer]
    # Preference of each device class when choosing the artifact the device runs (lower first): the
    # order nothing-was-timed falls back to and the tie-break; also ranks kinds a class cannot run, for
    # a job that produced none it can. Which kinds a class may be given at all is runs_on.
    preference: Mapping[DeviceClass, int]
    runs_on: frozenset[DeviceClass]
    extra: str | None  # the pyproject extra that installs its runtime on the worker host
    package: str | None  # the distribution a device installs to run it (for "pip install ..." hints)
    download_rank: int  # position in download lists: what people take first comes first
    # Whose model the file holds: the student's (verified, budget-checked and probed as the job's
    # output) or the teacher's own, quantized without distillation: a candidate the device artifact is
    # chosen among and the report compares, never budget-checked as the student (teacher_int8.py).
    of: Literal["student", "teacher"] = "student"

    @property
    def is_model(self) -> bool:
        """A file a runtime wrapper loads and runs (the C arrays hold a model but are compiled in)."""
        return self.wrapper is not None


_ALL_CLASSES: Final = frozenset(DEVICE_CLASSES)

KINDS: Final[tuple[ArtifactKind, ...]] = (
    ArtifactKind(
        name="onnx_fp32",
        label="ONNX fp32",
        description="ONNX, float32",
        target="onnx_fp32",
        exporter="export_onnx",
        exporter_step="edgedistill.workers.steps.export_onnx:ExportOnnx",
        suffix=".onnx",
        precision="fp32",
        io="float",
        runtime="onnxruntime",
        wrapper="onnx",
        measured_by=frozenset({"host", "agent"}),
        preference={"cpu": 2, "mobile": 3, "mcu": 3},
        runs_on=frozenset({"cpu"}),
        extra="ml",
        package="onnxruntime",
        download_rank=3,
    ),
    ArtifactKind(
        name="onnx_int8",
        label="ONNX int8",
        description="ONNX, int8 (QDQ)",
        target="onnx_int8",
        exporter="quantize_onnx",
        exporter_step="edgedistill.workers.steps.quantize:QuantizeOnnx",
        suffix=".onnx",
        precision="int8",
        io="float",  # QDQ: quantizes inside the graph with the scale/zero-point stored in it
        runtime="onnxruntime",
        wrapper="onnx",
        measured_by=frozenset({"host", "agent"}),
        preference={"cpu": 0, "mobile": 1, "mcu": 2},
        runs_on=frozenset({"cpu"}),
        extra="ml",
        package="onnxruntime",
        download_rank=2,
    ),
    ArtifactKind(
        name="tflite_int8",
        label="TFLite int8",
        description="TFLite int8, float I/O",
        target="tflite_int8",
        exporter="export_tflite",
        exporter_step="edgedistill.workers.steps.export_tflite:ExportTflite",
        suffix=".tflite",
        precision="int8",
        io="float",
        runtime="ai-edge-litert",
        wrapper="litert",
        measured_by=frozenset({"host", "agent"}),
        preference={"cpu": 1, "mobile": 0, "mcu": 1},
        runs_on=frozenset({"cpu", "mobile"}),
        extra="ml",
        package="ai-edge-litert",
        download_rank=1,
    ),
    ArtifactKind(
        name="tflite_int8_full",
        label="TFLite int8 (int8 I/O)",
        description="TFLite int8, int8 I/O (TFLM)",
        target="tflite_int8_full",
        exporter="export_tflite",
        exporter_step="edgedistill.workers.steps.export_tflite:ExportTflite",
        suffix=".tflite",
        precision="int8",
        io="int8",
        runtime="ai-edge-litert",
        wrapper="litert",
        measured_by=frozenset({"host", "agent", "tflm"}),
        preference={"cpu": 3, "mobile": 2, "mcu": 0},
        runs_on=_ALL_CLASSES,
        extra="ml",
        package="ai-edge-litert",
        download_rank=0,
    ),
    ArtifactKind(
        name="executorch_int8",
        label="ExecuTorch int8",
        description="ExecuTorch .pte, int8 (XNNPACK)",
        target="executorch_int8",
        exporter="export_executorch",
        exporter_step="edgedistill.workers.steps.export_executorch:ExportExecutorch",
        suffix=".pte",
        precision="int8",
        io="float",  # PT2E quantizes inside the program
        runtime="executorch",
        wrapper="executorch",
        measured_by=frozenset({"host", "agent"}),
        preference={"cpu": 4, "mobile": 4},
        runs_on=frozenset({"cpu", "mobile"}),
        extra="executorch",
        package="executorch",
        download_rank=6,
    ),
    ArtifactKind(
        name="executorch_fp32",
        label="ExecuTorch fp32",
        description="ExecuTorch .pte, float32 (XNNPACK)",
        target="executorch_fp32",
        exporter="export_executorch",
        exporter_step="edgedistill.workers.steps.export_executorch:ExportExecutorch",
        suffix=".pte",
        precision="fp32",
        io="float",
        runtime="executorch",
        wrapper="executorch",
        measured_by=frozenset({"host", "agent"}),
        preference={"cpu": 5, "mobile": 5},
        runs_on=frozenset({"cpu", "mobile"}),
        extra="executorch",
        package="executorch",
        download_rank=7,
    ),
    ArtifactKind(
        name="teacher_int8",
        label="Teacher int8 (no distillation)",
        description="the teacher itself, ONNX int8 (onnxruntime), for comparison",
        target="teacher_int8",
        exporter="quantize_teacher",
        exporter_step="edgedistill.workers.steps.teacher_int8:QuantizeTeacher",
        suffix=".onnx",
        precision="int8",
        io="float",
        runtime="onnxruntime",
        wrapper="onnx",
        # Host only: the probe (and so a device's output check) holds the student's variants.
        measured_by=frozenset({"host"}),
        preference={"cpu": 6, "mobile": 6, "mcu": 6},
        # An ONNX file: phones here run LiteRT and MCUs TFLite Micro, which need the teacher converted.
        runs_on=frozenset({"cpu"}),
        extra="ml",
        package="onnxruntime",
        download_rank=8,
        of="teacher",
    ),
    ArtifactKind(
        name="c_source",
        label="C array source",
        description="C array for firmware",
        target="c_array",
        exporter="export_c_array",
        exporter_step="edgedistill.workers.steps.mcu:ExportCArray",
        suffix=".cc",
        precision="int8",
        io="int8",
        runtime="tflite-micro",
        wrapper=None,  # compiled into firmware; the host checks the .tflite it embeds with TFLM
        measured_by=frozenset({"tflm"}),
        preference={},
        runs_on=frozenset({"mcu"}),
        extra="ml",
        package=None,
        download_rank=4,
    ),
    ArtifactKind(
        name="c_header",
        label="C array header",
        description="C array for firmware",
        target="c_array",
        exporter="export_c_array",
        exporter_step="edgedistill.workers.steps.mcu:ExportCArray",
        suffix=".h",
        precision="int8",
        io="int8",
        runtime="tflite-micro",
        wrapper=None,
        measured_by=frozenset({"tflm"}),
        preference={},
        runs_on=frozenset({"mcu"}),
        extra="ml",
        package=None,
        download_rank=5,
    ),
)

BY_NAME: Final[Mapping[str, ArtifactKind]] = {k.name: k for k in KINDS}
# The variant name verify and the report use for the full-int8 model run in the TFLite Micro interpreter.
TFLM_VARIANT: Final = "tflm"
TFLM_LABEL: Final = "TFLM (micro)"


def get(name: str) -> ArtifactKind:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown artifact kind {name!r}; known: {', '.join(BY_NAME)}") from None


def model_kinds() -> tuple[str, ...]:
    """Kinds a runtime wrapper can load and run, in registry order."""
    return tuple(k.name for k in KINDS if k.is_model)


def student_model_kinds() -> tuple[str, ...]:
    """Model kinds that hold the student (verify, probe and budgets cover these)."""
    return tuple(k.name for k in KINDS if k.is_model and k.of == "student")


def teacher_model_kinds() -> tuple[str, ...]:
    """Model kinds that hold the teacher itself, quantized without distillation (candidates only)."""
    return tuple(k.name for k in KINDS if k.is_model and k.of == "teacher")


def int8_kinds() -> tuple[str, ...]:
    """The student's int8 model files."""
    return tuple(k.name for k in KINDS if k.is_model and k.precision == "int8" and k.of == "student")


def measured_by(who: Measurer) -> tuple[str, ...]:
    """Kinds `who` measures: "host" (benchmark step), "agent" (devices), "tflm" (the MCU interpreter)."""
    return tuple(k.name for k in KINDS if who in k.measured_by)


def tflm_kind() -> str:
    """The model file the TFLite Micro interpreter runs on the host (the C arrays embed the same bytes)."""
    return next(k.name for k in KINDS if k.is_model and "tflm" in k.measured_by)


def by_preference(device_class: str) -> tuple[str, ...]:
    """Model kinds in the order a device class prefers them (the device-artifact fallback and tie-break)."""
    ranked = [k for k in KINDS if k.is_model and device_class in k.preference]
    return tuple(k.name for k in sorted(ranked, key=lambda k: k.preference[device_class]))  # type: ignore[index]


def runnable_on(device_class: str) -> tuple[str, ...]:
    """Model kinds a device of this class can run, in its preference order."""
    return tuple(n for n in by_preference(device_class) if device_class in BY_NAME[n].runs_on)


def with_suffix(suffix: str) -> tuple[str, ...]:
    return tuple(k.name for k in KINDS if k.is_model and k.suffix == suffix)


def exporter_steps() -> dict[str, str]:
    """Exporter step name -> "module:Class", for the pipeline's step registry."""
    return {k.exporter: k.exporter_step for k in KINDS}


def targets() -> tuple[str, ...]:
    """The profile targets, in registry order (one target may write several kinds: c_array). The
    teacher's own int8 file is a job option (options.teacher_int8), not a profile target."""
    return tuple(dict.fromkeys(k.target for k in KINDS if k.of == "student"))


def target_descriptions() -> dict[str, str]:
    return {k.target: k.description for k in KINDS if k.of == "student"}


def download_order() -> tuple[str, ...]:
    return tuple(k.name for k in sorted(KINDS, key=lambda k: k.download_rank))


def labels() -> dict[str, str]:
    return {k.name: k.label for k in KINDS}


def runtime_of(name: str) -> str | None:
    found = BY_NAME.get(name)
    return found.runtime if found is not None else None
