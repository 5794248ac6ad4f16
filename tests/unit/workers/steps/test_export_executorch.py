"""ExportExecutorch on the step fixtures: fp32 and int8 .pte programs lowered to XNNPACK, verified in
ExecuTorch's runtime on the test split with verify's metrics; several-input students keep the
teacher's names and input order."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("executorch")

from edgedistill.contracts.errors import PipelineError
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.runtimes.executorch import ExecutorchModel
from edgedistill.workers.steps.export_executorch import KINDS, ExportExecutorch
from edgedistill.workers.steps.export_multi import torch_predict_all
from edgedistill.workers.steps.export_onnx import torch_predict
from edgedistill.workers.steps.heads import export_module
from tests.unit.workers.steps.conftest import make_run
from tests.unit.workers.steps.test_export_multi import multi_state
from tests.unit.workers.steps.test_students_multi import TEXT, VAD_PLUS_AGE


def _profile(base: str = "mobile-arm64", targets: tuple[str, ...] = KINDS) -> Any:
    # The profile schema's target list learns the ExecuTorch kinds from the artifact-kind registry;
    # until then a copy with the targets set (model_copy does not re-validate).
    prof = builtin_profiles()[base]
    return prof.model_copy(update={"targets": [*prof.targets, *targets]})


@pytest.mark.slow  # lowers and verifies real programs: seconds of CPU each
def test_digits_fp32_and_int8_pte_are_written_verified_and_agree(tmp_path: Path, digits_case: Any) -> None:
    run = make_run(tmp_path, _profile())
    state = digits_case.state()
    ExportExecutorch().run(run.ctx, state)

    fp32, int8 = state.artifacts["executorch_fp32"], state.artifacts["executorch_int8"]
    assert fp32.path.name == "student_fp32.pte" and int8.path.name == "student_int8.pte"
    assert fp32.path.is_file() and int8.path.is_file() and (int8.path.parent / "student_int8.pte.json").is_file()
    assert [e.data["kind"] for e in run.of_kind("artifact")] == ["executorch_fp32", "executorch_int8"]

    x = digits_case.data.x_of("test")
    student = torch_predict(digits_case.student, x)
    got = ExecutorchModel(int8.path).predict(x)  # names from the sidecar, NCHW as the data is
    agreement = float(np.mean(got.argmax(1) == student.argmax(1)))
    assert agreement >= 0.95

    meta = int8.metadata
    assert meta["precision"] == "int8" and meta["runtime"] == "executorch"
    assert meta["signature"]["inputs"][0]["shape"] == ["batch", 1, 8, 8] and meta["signature"]["layout"] == "NCHW"
    deleg = meta["delegation"]
    assert deleg["delegated_subgraphs"] >= 1 and deleg["delegated_nodes"] > deleg["non_delegated_nodes"]
    # torch.flatten on the dynamic batch (a view of sym_size) is the only op left to the portable kernels
    assert set(deleg["non_delegated_ops"]) <= {"getitem", "sym_size", "aten_view_copy_default"}
    assert meta["quantization"]["calibration_samples"] == 64
    v = meta["verification"]  # verify's metrics of this variant, on the whole test split
    assert v["samples"] == x.shape[0] and v["runtime"] == "executorch"
    teacher = digits_case.teacher.predict(x)
    assert v["top1_agreement"] == pytest.approx(float(np.mean(got.argmax(1) == teacher.argmax(1))))
    assert v["accuracy"] == pytest.approx(float(np.mean(got.argmax(1) == digits_case.data.y_of("test"))))
    assert v["drop_vs_student_fp32_pp"] < 5.0
    assert fp32.metadata["check"]["max_abs_diff_vs_torch"]["output"] < 1e-3  # fp32 XNNPACK is torch's maths


@pytest.mark.slow
def test_int8_program_is_smaller_than_fp32(tmp_path: Path, digits_case: Any) -> None:
    """A student with a few thousand weights (the fixture's 1.3 k-parameter one is all program overhead:
    its int8 file's per-channel scales and quantize nodes outweigh the 4 bytes saved per weight)."""
    from tests.unit.workers.steps.conftest import TinyDSCNN, train

    data = digits_case.data
    tr = data.splits["train"]
    state = digits_case.state()
    state.student = train(TinyDSCNN(1, 10, width=48), data.x[tr], data.y[tr], epochs=3)
    ExportExecutorch().run(make_run(tmp_path, _profile()).ctx, state)
    fp32, int8 = state.artifacts["executorch_fp32"], state.artifacts["executorch_int8"]
    assert int8.size_bytes < 0.6 * fp32.size_bytes, (int8.size_bytes, fp32.size_bytes)


@pytest.mark.slow  # lowers and verifies real programs: seconds of CPU each
def test_only_targeted_kinds_and_nothing_without_targets(tmp_path: Path, vector_case: Any) -> None:
    state = vector_case.state()
    ExportExecutorch().run(make_run(tmp_path, "mcu-cortex-m4").ctx, state)
    assert not any(k.startswith("executorch") for k in state.artifacts)
    ExportExecutorch().run(make_run(tmp_path, _profile("cpu-x86", ("executorch_int8",))).ctx, state)
    assert sorted(state.artifacts) == ["executorch_int8"]
    v = state.artifacts["executorch_int8"].metadata["verification"]
    assert v["r2_vs_teacher"] > 0.8 and "mse_vs_teacher" in v  # regression: verify's regression metrics


def test_empty_test_split_is_a_readable_failure(tmp_path: Path, vector_case: Any) -> None:
    state = vector_case.state()
    # a copy: the case's TransferData is shared by every test of the session
    state.data = dataclasses.replace(state.data, splits={**state.data.splits, "test": np.array([], dtype=np.int64)})
    with pytest.raises(PipelineError, match="test split is empty"):
        ExportExecutorch().run(make_run(tmp_path, _profile()).ctx, state)


@pytest.mark.slow
@pytest.mark.parametrize("signature", [VAD_PLUS_AGE, TEXT], ids=["two_float_inputs", "token_ids_and_mask"])
def test_multi_input_student_exports_and_runs_by_teacher_name(tmp_path: Path, signature: Any) -> None:
    state = multi_state(signature)
    x = state.data.inputs_of("test")
    ref = torch_predict_all(export_module(state.student, signature), signature, x)
    state.teacher_outputs = {"test": ref}  # the teacher's outputs by name (here: the float student's)
    ExportExecutorch().run(make_run(tmp_path, _profile(), calibration_samples=24).ctx, state)

    for kind in KINDS:
        rec = state.artifacts[kind]
        assert rec.metadata["teacher_io"] == {"inputs": list(signature.input_names),
                                              "outputs": list(signature.output_names)}  # fmt: skip
        ins = rec.metadata["signature"]["inputs"]
        assert [t["name"] for t in ins] == list(signature.input_names)
        for t, spec in zip(ins, signature.inputs, strict=True):
            assert t["dtype"] == ("float32" if spec.dtype == "float32" else "int64")
            assert t["shape"][1:] == list(spec.per_sample)
        got = ExecutorchModel(rec.path).predict_all(dict(reversed(list(x.items()))))  # by name, not dict order
        assert list(got) == list(signature.output_names)
        rel = 1e-3 if kind == "executorch_fp32" else 0.1
        for name, r in ref.items():
            assert got[name].shape == r.shape
            assert float(np.mean(np.abs(got[name] - r))) <= rel * (float(np.max(np.abs(r))) + 1e-3), (kind, name)
        v = rec.metadata["verification"]
        assert set(v["outputs"]) == set(signature.output_names) and 0.0 <= v["headline"] <= 1.0
    # Both tiny students are mostly program overhead (and the text one's embedding table stays fp32 on the
    # portable kernels), so int8 is not smaller here; the Linear layers are what XNNPACK takes.
    deleg = state.artifacts["executorch_int8"].metadata["delegation"]
    assert deleg["delegated_subgraphs"] >= 1
    if signature is TEXT:
        assert "aten_embedding_default" in deleg["non_delegated_ops"] and not deleg["fully_delegated"]
