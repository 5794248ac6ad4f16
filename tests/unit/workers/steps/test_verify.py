from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgedistill.contracts.errors import ArtifactOverBudget
from edgedistill.runtimes.litert import run_tflite
from edgedistill.runtimes.onnx import run_onnx
from edgedistill.workers.steps.export_onnx import torch_predict
from edgedistill.workers.steps.metrics import accuracy
from edgedistill.workers.steps.verify import TFLM_MAX_SAMPLES, OpNotAllowed, Verify


def _verify(exported: Any, run_factory: Any, profile: Any, base: str, case: str, **options: Any) -> tuple[Any, Any]:
    """Verify artifacts exported for the built-in `base` profile, judged against `profile`."""
    _, state = exported(base, case)
    run = run_factory(profile, **options)
    Verify().run(run.ctx, state)
    return run, state


def test_mcu_metrics_cover_every_variant_including_real_tflm(exported: Any, run_factory: Any, digits_case: Any) -> None:
    _run, state = _verify(exported, run_factory, "mcu-cortex-m4", "mcu-cortex-m4", "digits")
    m = state.metrics
    assert set(m) == {"teacher", "student_fp32", "onnx_fp32", "onnx_int8", "tflite_int8_full", "tflm"}

    x, y = digits_case.data.x_of("test"), digits_case.data.y_of("test")
    assert m["student_fp32"]["accuracy"] == accuracy(torch_predict(digits_case.student, x), y)
    assert m["onnx_int8"]["accuracy"] == accuracy(run_onnx(state.artifacts["onnx_int8"].path, x), y)
    assert m["teacher"]["top1_agreement"] == 1.0 and m["student_fp32"]["max_abs_diff_vs_student_fp32"] == 0.0
    assert m["tflm"]["samples"] == min(x.shape[0], TFLM_MAX_SAMPLES) and m["tflm"]["runtime"] == "tflite-micro"
    for variant in ("onnx_int8", "tflite_int8_full", "tflm"):
        assert m[variant]["quality_metric"] == "accuracy"
        expected_drop = 100 * (m["student_fp32"]["accuracy"] - m[variant]["accuracy"])
        assert m[variant]["drop_vs_student_fp32_pp"] == pytest.approx(expected_drop)

    b = state.budget
    assert b["flash"]["artifact_kind"] == "tflite_int8_full"
    assert b["flash"]["used_bytes"] == state.artifacts["tflite_int8_full"].size_bytes and b["flash"]["fits"]
    assert b["ram"]["measured"] and b["ram"]["used_bytes"] == b["tflm_arena"]["reserved_bytes"]
    assert b["ram"]["available_bytes"] == 262144 and b["ram"]["fits"]
    assert b["macs"] == {"used": 30_000, "available": 20_000_000, "fits": True}
    assert b["violations"] == []
    assert set(b["ops"]["tflite_int8_full"]["used"]) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN"}


def test_probe_holds_inputs_and_host_outputs(exported: Any, run_factory: Any, digits_case: Any) -> None:
    _run, state = _verify(exported, run_factory, "mcu-cortex-m4", "mcu-cortex-m4", "digits")
    rec = state.artifacts["probe"]
    with np.load(rec.path) as probe:
        x = probe["x"]
        assert x.shape == (32, 1, 8, 8)
        np.testing.assert_array_equal(x, digits_case.data.x_of("test")[:32])
        np.testing.assert_array_equal(probe["y"], digits_case.data.y_of("test")[:32])
        np.testing.assert_allclose(probe["out_onnx_int8"], run_onnx(state.artifacts["onnx_int8"].path, x), atol=1e-6)
        lite = run_tflite(state.artifacts["tflite_int8_full"].path, x)
        np.testing.assert_allclose(probe["out_tflite_int8_full"], lite, atol=1e-6)
        assert {"out_teacher", "out_student_fp32", "out_tflm"} <= set(probe.files)
    assert rec.metadata["arrays"]["x"]["shape"] == [32, 1, 8, 8]


def test_regression_without_tflm(exported: Any, run_factory: Any) -> None:
    _run, state = _verify(exported, run_factory, "mobile-arm64", "mobile-arm64", "vector")
    m = state.metrics
    assert "tflm" not in m and "tflite_int8" in m
    assert {"mse_vs_teacher", "r2_vs_teacher", "mse", "r2"} <= set(m["tflite_int8"])
    assert m["tflite_int8"]["quality_metric"] == "r2"
    assert state.budget["ram"]["measured"] is False


def test_flash_over_budget_asks_for_a_smaller_student(exported: Any, run_factory: Any, make_profile: Any) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    size = state.artifacts["tflite_int8_full"].size_bytes
    assert size > 4096  # the smallest flash budget a profile may have
    run = run_factory(make_profile("mcu-cortex-m4", budgets={"max_model_bytes": 4096}))
    with pytest.raises(ArtifactOverBudget) as info:
        Verify().run(run.ctx, state)
    d = info.value.details
    assert d["model_bytes"] == state.artifacts["tflite_int8_full"].size_bytes  # the file the MCU holds
    assert d["corrections"]["est_int8_bytes"] == pytest.approx(d["model_bytes"] / 6_000)
    assert d["violations"] == [f"tflite_int8_full is {size:,} bytes, over max_model_bytes=4,096"]
    assert state.budget["flash"]["fits"] is False
    assert "probe" not in state.artifacts  # a failed verification publishes nothing for the device


def test_cpu_flash_covers_every_int8_artifact(exported: Any, run_factory: Any, make_profile: Any) -> None:
    _, state = exported("cpu-x86", "digits")
    sizes = {k: state.artifacts[k].size_bytes for k in ("onnx_int8", "tflite_int8")}
    limit = min(sizes.values())  # the smaller file fits exactly, the larger one does not
    assert max(sizes.values()) > limit >= 4096
    run = run_factory(make_profile("cpu-x86", budgets={"max_model_bytes": limit}))
    with pytest.raises(ArtifactOverBudget) as info:
        Verify().run(run.ctx, state)
    (over,) = [k for k, v in sizes.items() if v > limit]
    assert info.value.details["violations"] == [f"{over} is {sizes[over]:,} bytes, over max_model_bytes={limit:,}"]


def test_arena_over_budget(exported: Any, run_factory: Any, make_profile: Any) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    run = run_factory(make_profile("mcu-cortex-m4", budgets={"max_ram_bytes": 2048}))
    with pytest.raises(ArtifactOverBudget, match="tensor arena") as info:
        Verify().run(run.ctx, state)
    assert info.value.details["arena_bytes"] == state.budget["tflm_arena"]["reserved_bytes"] > 2048
    assert state.budget["ram"]["fits"] is False


def test_macs_over_budget(exported: Any, run_factory: Any, make_profile: Any) -> None:
    _, state = exported("mobile-arm64", "digits")
    run = run_factory(make_profile("mobile-arm64", budgets={"max_macs": 1000}))
    with pytest.raises(ArtifactOverBudget, match="30,000 MACs") as info:
        Verify().run(run.ctx, state)
    assert info.value.details["macs"] == 30_000


def test_ops_outside_the_allowlist_are_named(exported: Any, run_factory: Any, make_profile: Any) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    allow = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]
    run = run_factory(make_profile("mcu-cortex-m4", op_allowlist=allow))
    with pytest.raises(OpNotAllowed, match="tflite_int8_full uses MEAN"):
        Verify().run(run.ctx, state)
    assert state.budget["ops"]["tflite_int8_full"]["not_allowed"] == ["MEAN"]


@pytest.mark.parametrize("qat", ["never", "auto"])
def test_int8_drop_over_the_accuracy_budget_warns(exported: Any, run_factory: Any, qat: str) -> None:
    """Degrade the int8 model's outputs by swapping in a worse file: verify must notice the drop, and
    with options.qat auto ask the runner for quantization-aware distillation instead of warning."""
    _, state = exported("mobile-arm64", "digits")
    # The fp32 ONNX of an untrained copy stands in for a badly quantized onnx_int8.
    import copy

    import torch

    from edgedistill.workers.steps.export_onnx import export_student_onnx

    bad = copy.deepcopy(state.student)
    with torch.no_grad():
        for p in bad.parameters():
            p.mul_(-1.0)
    run = run_factory("mobile-arm64", accuracy_budget_pp=1.0, qat=qat)
    path = run.ctx.work_dir / "bad.onnx"
    export_student_onnx(bad, state.data.x_of("test")[:1], path)
    state.artifacts["onnx_int8"] = type(state.artifacts["onnx_int8"])(
        kind="onnx_int8", path=path, sha256="-", size_bytes=path.stat().st_size, metadata={}
    )
    if qat == "auto":
        from edgedistill.contracts.errors import Int8OverBudget

        with pytest.raises(Int8OverBudget, match="onnx_int8: accuracy") as info:
            Verify().run(run.ctx, state)
        ptq = info.value.details["ptq"]
        assert ptq["onnx_int8"]["drop_vs_student_fp32_pp"] > 1.0  # type: ignore[index]
        assert "student_fp32" in ptq and "probe" in state.artifacts  # verify finished its work first
        assert not any(w.startswith("onnx_int8") for w in state.warnings)
        return
    Verify().run(run.ctx, state)
    drop = state.metrics["onnx_int8"]["drop_vs_student_fp32_pp"]
    assert drop > 1.0
    assert any(w.startswith("onnx_int8: accuracy") and "budget 1.0 pp" in w for w in state.warnings)
    assert any(e.data["message"].startswith("onnx_int8") for e in run.of_kind("warning"))
    tfl_drop = state.metrics["tflite_int8"]["drop_vs_student_fp32_pp"]
    assert any(w.startswith("tflite_int8") for w in state.warnings) == (tfl_drop > 1.0)


def test_a_detector_file_losing_faces_is_over_budget_even_when_the_per_anchor_headline_is_not() -> None:
    from edgedistill.workers.steps.verify_multi import int8_drops

    def variant(headline: float, image: float) -> dict[str, Any]:
        scores = {"headline": headline, "image_agreement": image}
        return {"headline": headline, "outputs": {"scores": scores, "boxes": {"headline": 0.8}}}

    metrics = {
        "student_fp32": variant(0.839, 0.966),
        "tflite_int8": variant(0.840, 0.925),  # per anchor no drop; 4.1 pp fewer images decided alike
        "onnx_int8": variant(0.838, 0.964),  # within a 0.5 pp budget on both
    }
    [msg] = int8_drops(metrics, ("onnx_int8", "tflite_int8"), 0.5)
    assert msg.startswith("tflite_int8: output 'scores' fires as the teacher's on 92.5 % of the images")
    assert "4.10 pp below" in msg
    metrics["onnx_int8"]["drop_vs_student_fp32_pp"] = 0.9
    assert len(int8_drops(metrics, ("onnx_int8", "tflite_int8"), 0.5)) == 2
    assert int8_drops(metrics, ("onnx_int8", "tflite_int8"), 5.0) == []
