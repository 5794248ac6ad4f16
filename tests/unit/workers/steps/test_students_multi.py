"""Students for multi-input / multi-output / token teachers (workers/steps/students_multi.py): the
per-sample output shapes are the teacher's, the module is sized to each profile, and the ONNX export
keeps the teacher's names, dtypes and a dynamic batch and computes what torch computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec
from edgedistill.contracts.spec import StudentOptions
from edgedistill.workers.steps.anchor_grid import AnchorGrid, Level
from edgedistill.workers.steps.build_student import build_student
from edgedistill.workers.steps.export_onnx import export_signature_onnx
from edgedistill.workers.steps.students_multi import (
    MultiStudent,
    TupleStudent,
    example_inputs,
    input_stats,
    needs_multi_student,
)
from tests.unit.workers.steps.test_anchor_grid import synthetic_teacher

PROFILES = builtin_profiles()


Shape = tuple[int | None, ...]


def sig(
    inputs: list[tuple[str, str, Shape]], outputs: list[tuple[str, str, Shape, str]], layout: str | None = None
) -> ModelSignature:
    return ModelSignature(
        inputs=tuple(TensorSpec(name=n, dtype=d, shape=s, layout=layout) for n, d, s in inputs),  # type: ignore[arg-type]
        outputs=tuple(OutputSpec(name=n, dtype=d, shape=s, kind=k) for n, d, s, k in outputs),  # type: ignore[arg-type]
    )


MAGIKA = sig([("bytes", "int32", (None, 2048))], [("target_label", "float32", (None, 214), "probabilities")])
BLAZEFACE = sig(
    [("input", "float32", (None, 3, 32, 32))],
    [
        ("regressors", "float32", (None, 96, 16), "boxes"),
        ("classificators", "float32", (None, 96, 1), "sigmoid_logits"),
    ],
)
TEXT = sig(
    [("input_ids", "int64", (None, 64)), ("attention_mask", "int64", (None, 64))],
    [("logits", "float32", (None, 3), "logits")],
)
WAKEWORD = sig([("x", "float32", (None, 16, 96))], [("score", "float32", (None, 1), "sigmoid")], layout="NLC")
SKLEARN = sig(
    [("float_input", "float32", (None, 30))],
    [("label", "int64", (None,), "class_index"), ("probabilities", "float32", (None, 2), "probabilities")],
)
VAD_PLUS_AGE = sig(
    [("spec", "float32", (None, 40, 50)), ("meta", "float32", (None, 4))],
    [("speech", "float32", (None, 16), "sigmoid"), ("age", "float32", (None, 1), "regression")],
)
CASES = {"magika": MAGIKA, "blazeface": BLAZEFACE, "text": TEXT, "wakeword": WAKEWORD, "sklearn": SKLEARN,
         "two_inputs": VAD_PLUS_AGE}  # fmt: skip


def random_inputs(signature: ModelSignature, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = (n, *[int(d) for d in spec.per_sample if d is not None])
        if "mask" in spec.name:
            lengths = rng.integers(1, shape[1] + 1, size=n)
            out[spec.name] = (np.arange(shape[1])[None, :] < lengths[:, None]).astype(np.int64)
        elif spec.dtype.startswith("int"):
            out[spec.name] = rng.integers(0, 300, size=shape).astype(spec.dtype)  # some ids beyond V
        else:
            out[spec.name] = rng.normal(size=shape).astype(np.float32) * 10 + 3
    return out


def _trained_outputs(signature: ModelSignature) -> list[OutputSpec]:
    return [o for o in signature.outputs if o.kind != "class_index"]


@pytest.mark.parametrize("case", CASES)
def test_outputs_have_the_teachers_per_sample_shapes(case: str) -> None:
    signature = CASES[case]
    x = random_inputs(signature, 5)
    module, arch = build_student(signature, PROFILES["mobile-arm64"], StudentOptions(), input_stats(signature, x))
    outs = module(*(torch.from_numpy(x[n]) for n in signature.input_names))
    assert isinstance(outs, tuple)
    want = [tuple(int(d) for d in o.per_sample if d is not None) for o in _trained_outputs(signature)]
    assert [tuple(o.shape[1:]) for o in outs] == want
    assert all(o.shape[0] == 5 and torch.isfinite(o).all() for o in outs)
    if isinstance(module, MultiStudent):  # the single-input families count BN-folded parameters
        assert arch["params"] == sum(p.numel() for p in module.parameters())
    assert arch["est_int8_bytes"] <= 0.9 * PROFILES["mobile-arm64"].budgets.max_model_bytes


def test_single_float_input_teachers_keep_the_tuned_single_input_students() -> None:
    assert not needs_multi_student(WAKEWORD) and not needs_multi_student(SKLEARN)
    assert needs_multi_student(MAGIKA) and needs_multi_student(BLAZEFACE) and needs_multi_student(TEXT)
    module, arch = build_student(WAKEWORD, PROFILES["mcu-cortex-m4"], StudentOptions(), {})
    assert isinstance(module, TupleStudent) and arch["family"] == "ds_cnn1d"
    # NLC (time, features) data: the student reads 96 channels over 16 steps
    assert arch["input_shape"] == [96, 16]


def test_detector_heads_sit_on_the_anchor_grid() -> None:
    module, arch = build_student(BLAZEFACE, PROFILES["mobile-arm64"], StudentOptions(), {})
    assert isinstance(module, MultiStudent)
    assert arch["heads"] == {"regressors": "anchor", "classificators": "anchor"}
    boxes = module.heads["out0"]
    # weights: positions -> 96 anchors, channels -> 16 values; not a dense trunk -> 96 x 16 layer
    assert boxes.to_anchors.out_features == 96 and boxes.to_values.out_features == 16


def test_token_ids_beyond_the_vocabulary_are_hashed_in_the_graph() -> None:
    stats = {"bytes": {"max_id": 100_000}}
    module, arch = build_student(MAGIKA, PROFILES["mcu-cortex-m4"], StudentOptions(width=8, depth=2), stats)
    vocab = arch["vocab"]["bytes"]
    assert 16 <= vocab < 100_001  # budget-sized, not the id range
    ids = torch.randint(0, 10 * vocab, (3, 2048))
    module.eval()
    with torch.no_grad():
        a = module(ids)[0]
        b = module(torch.remainder(ids, vocab))[0]
    torch.testing.assert_close(a, b)


def test_mask_hides_padding_from_the_pooled_features() -> None:
    module, _ = build_student(
        TEXT, PROFILES["cpu-x86"], StudentOptions(width=16, depth=1), {"input_ids": {"max_id": 999}}
    )
    module.eval()
    ids = torch.randint(0, 999, (2, 64))
    mask = torch.zeros(2, 64, dtype=torch.int64)
    mask[:, :10] = 1
    changed = ids.clone()
    changed[:, 40:] = torch.randint(0, 999, (2, 24))  # padding positions differ, real tokens do not
    with torch.no_grad():
        a = module(ids, mask)[0]
        b = module(changed, mask)[0]
        c = module(changed, torch.ones_like(mask))[0]
    # a receptive field of a few tokens reaches beyond position 10 only a little: equal up to the
    # dilated convolutions' reach, which ends well before position 40
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_budgets_and_teacher_ratio_size_the_student() -> None:
    stats = {"bytes": {"max_id": 255}}
    _, arch_s = build_student(MAGIKA, PROFILES["mcu-cortex-m4"], StudentOptions(), stats, teacher_params=400_000)
    _, arch_b = build_student(MAGIKA, PROFILES["cpu-x86"], StudentOptions(), stats)
    assert arch_s["params"] <= 50_000 < arch_b["params"]
    assert "teacher / 8" in arch_s["chosen_because"]
    assert arch_s["est_arena_bytes"] <= PROFILES["mcu-cortex-m4"].budgets.max_ram_bytes


def test_dynamic_per_sample_dims_are_refused() -> None:
    dyn = sig([("ids", "int64", (None, None))], [("y", "float32", (None, 2), "logits")])
    with pytest.raises(InputError, match="dynamic"):
        build_student(dyn, PROFILES["cpu-x86"], StudentOptions(), {})


@pytest.mark.parametrize("case", ["blazeface", "text", "two_inputs", "magika"])
def test_onnx_export_keeps_names_dtypes_and_dynamic_batch(tmp_path: Path, case: str) -> None:
    import onnxruntime as ort

    signature = CASES[case]
    x = random_inputs(signature, 7)
    module, _ = build_student(
        signature, PROFILES["cpu-x86"], StudentOptions(width=8, depth=2), input_stats(signature, x)
    )
    module.eval()
    names = tuple(o.name for o in _trained_outputs(signature))
    path = tmp_path / "s.onnx"
    export_signature_onnx(module, example_inputs(signature), path, signature.input_names, names)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(signature.input_names)
    assert [o.name for o in sess.get_outputs()] == list(names)
    for i, spec in zip(sess.get_inputs(), signature.inputs, strict=True):
        assert ("int64" in i.type) == spec.dtype.startswith("int") and not isinstance(i.shape[0], int)
    got = sess.run(None, {k: v.astype(np.int64) if v.dtype.kind == "i" else v for k, v in x.items()})
    with torch.no_grad():
        ref = module(*(torch.from_numpy(x[n]).long() if x[n].dtype.kind == "i" else torch.from_numpy(x[n])
                       for n in signature.input_names))  # fmt: skip
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=1e-3)


def test_build_student_step_builds_a_multi_student_from_the_transfer_data(tmp_path: Path) -> None:
    from edgedistill.workers.pipeline.context import RunState
    from edgedistill.workers.steps.build_student import BuildStudent
    from edgedistill.workers.steps.data import TransferData, make_splits
    from tests.unit.workers.steps.conftest import make_run

    arrays = random_inputs(TEXT, 40)
    splits, _ = make_splits(40, None, val_fraction=0.2, test_fraction=0.2, seed=0)
    state = RunState()
    state.signature = TEXT
    state.data = TransferData(
        x=arrays["input_ids"], y=None, splits=splits, modality="vector", task="classification", num_outputs=3,
        arrays=arrays, input_names=TEXT.input_names,
    )  # fmt: skip
    run = make_run(tmp_path, "mcu-cortex-m7")
    BuildStudent().run(run.ctx, state)
    assert isinstance(state.student, MultiStudent)
    assert state.student_arch["encoders"] == {"input_ids": "tokens", "attention_mask": "mask"}
    # ids seen in the data reach 299: the vocabulary is no larger than that
    assert state.student_arch["vocab"]["input_ids"] <= 300
    assert any("student multi" in e.data.get("message", "") for e in run.of_kind("progress"))


# a 32x32 NHWC detector (as TFLite teachers take images) with 8x8x1 + 4x4x2 = 96 anchors
DETECTOR_GRID = AnchorGrid((Level(4, 8, 8, 1), Level(8, 4, 4, 2)), "position")
NHWC_DETECTOR = sig(
    [("input", "float32", (None, 32, 32, 3))],
    [
        ("regressors", "float32", (None, 96, 16), "boxes"),
        ("classificators", "float32", (None, 96, 1), "sigmoid_logits"),
    ],
    layout="NHWC",
)


def detector_outputs(n: int = 120) -> dict[str, np.ndarray]:
    return {
        "regressors": synthetic_teacher(DETECTOR_GRID, 32, 32, n, 16, seed=1),
        "classificators": synthetic_teacher(DETECTOR_GRID, 32, 32, n, 1),
    }


def test_detector_heads_sit_on_the_teachers_inferred_grid() -> None:
    profile = PROFILES["mobile-arm64"]
    opts = StudentOptions(width=16, depth=2)
    module, arch = build_student(NHWC_DETECTOR, profile, opts, {}, teacher_outputs=detector_outputs())
    assert isinstance(module, MultiStudent)
    assert arch["heads"] == {"regressors": "grid", "classificators": "grid"}
    assert arch["anchor_grids"]["regressors"] == DETECTOR_GRID.as_state()
    assert "8x8x1 + 4x4x2" in arch["anchor_grid_inference"]["classificators"]
    # the NHWC image is read as 3 channels over 32x32, not 32 channels over 32x3
    first = module.encoders["in0"].features[0]
    assert isinstance(first, torch.nn.Conv2d) and first.in_channels == 3
    x = torch.randn(2, 32, 32, 3)
    boxes, scores = module(x)
    assert boxes.shape == (2, 96, 16) and scores.shape == (2, 96, 1)
    # much smaller than the learned (positions x anchors) assignment of the same encoder
    _, dense = build_student(NHWC_DETECTOR, profile, opts, {})
    assert dense["heads"] == {"regressors": "anchor", "classificators": "anchor"}
    assert arch["params"] < dense["params"]
    assert arch["params"] == sum(p.numel() for p in module.parameters())


def test_detector_anchor_depends_on_its_own_cell() -> None:
    """A change in one corner of the image moves the anchors of that corner's cells more than the
    opposite corner's: the grid head keeps the teacher's spatial order."""
    torch.manual_seed(0)
    module, _ = build_student(NHWC_DETECTOR, PROFILES["mobile-arm64"], StudentOptions(width=16, depth=2), {},
                              teacher_outputs=detector_outputs())  # fmt: skip
    module.eval()
    x = torch.randn(1, 32, 32, 3)
    y = x.clone()
    y[:, :8, :8] += 3.0  # top-left 8x8 pixels: cells (0..1, 0..1) of the 8x8 level
    with torch.no_grad():
        delta = (module(y)[1] - module(x)[1]).abs()[0, :64, 0].reshape(8, 8)
    assert float(delta[:2, :2].mean()) > 5 * float(delta[5:, 5:].mean())


def test_structureless_teacher_keeps_the_learned_anchor_assignment() -> None:
    noise = {k: np.random.default_rng(0).normal(size=v.shape).astype(np.float32) for k, v in detector_outputs().items()}
    _, arch = build_student(NHWC_DETECTOR, PROFILES["mobile-arm64"], StudentOptions(width=16, depth=2), {},
                            teacher_outputs=noise)  # fmt: skip
    assert arch["heads"] == {"regressors": "anchor", "classificators": "anchor"}
    assert "anchor_grids" not in arch
    assert arch["anchor_grid_inference"]["regressors"].startswith("learned anchor assignment")


def test_grid_heads_start_at_the_teachers_mean_outputs() -> None:
    teacher = detector_outputs()
    module, arch = build_student(NHWC_DETECTOR, PROFILES["mobile-arm64"], StudentOptions(width=16, depth=2), {},
                                 teacher_outputs=teacher)  # fmt: skip
    assert set(arch["head_bias_init"]) == {"regressors", "classificators"}
    module.eval()
    with torch.no_grad():
        boxes, scores = module(torch.zeros(8, 32, 32, 3))
    p = 1 / (1 + np.exp(-teacher["classificators"]))
    # the untrained head's mean is the teacher's, not 0 / 0.5
    assert float(boxes.mean()) == pytest.approx(float(teacher["regressors"].mean()), abs=0.15)
    assert float(torch.sigmoid(scores).mean()) == pytest.approx(float(p.mean()), abs=0.1)


def test_detector_scores_get_an_image_level_term() -> None:
    from edgedistill.contracts.spec import JobOptions
    from edgedistill.workers.steps.distill.multi import output_terms

    keys = [t.key for t in output_terms(NHWC_DETECTOR, JobOptions(), detector_outputs(), method="kd",
                                        has_labels=False, primary=None)]  # fmt: skip
    # boxes (no score output named in this signature): smooth-L1; scores: per-anchor BCE + image-level
    assert keys == ["smooth_l1_output", "bce_output", "max_score_output"]
    # a one-unit sigmoid output (no anchors) gets no image-level term
    assert "max_score_output" not in [t.key for t in output_terms(WAKEWORD, JobOptions(), {}, method="kd",
                                                                  has_labels=False, primary=None)]  # fmt: skip
