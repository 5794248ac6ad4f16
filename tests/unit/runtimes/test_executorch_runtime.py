"""edgedistill.runtimes.executorch on real .pte programs lowered to XNNPACK: outputs match torch (any
batch size, chunked to the program's bound), inputs by the teacher's names in order, readable errors
for inputs ExecuTorch would only answer with an error code, and a clear error without executorch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("executorch")
import torch
from torch import nn

from edgedistill.runtimes import executorch as et
from edgedistill.workers.steps.export_executorch import export_pte

MAX_BATCH = 16


class TwoInputs(nn.Module):
    """A float feature vector and int64 token ids -> (scores, value): two outputs in this order."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.fc = nn.Linear(6 + 8, 4)
        self.value = nn.Linear(6, 1)

    def forward(self, feats: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.emb(ids).mean(1)
        return self.fc(torch.cat([feats, pooled], 1)), self.value(feats)


@pytest.fixture(scope="module")
def mlp() -> tuple[nn.Module, bytes]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    pte, delegation = export_pte(model, (torch.zeros(1, 12),), max_batch=MAX_BATCH)
    assert delegation.fully_delegated
    return model, pte


@pytest.fixture(scope="module")
def two_inputs() -> tuple[nn.Module, bytes]:
    torch.manual_seed(0)
    model = TwoInputs().eval()
    calib = [(torch.randn(16, 6), torch.randint(0, 50, (16, 5))) for _ in range(8)]
    pte, delegation = export_pte(
        model, (torch.zeros(1, 6), torch.zeros(1, 5, dtype=torch.int64)), calibration=calib, max_batch=MAX_BATCH
    )
    assert delegation.delegated_subgraphs >= 1  # the Linears; the embedding runs on portable kernels
    return model, pte


def _names() -> dict[str, Any]:
    return {"teacher_io": {"inputs": ["feats", "ids"], "outputs": ["scores", "value"]}}


def test_predict_matches_torch_for_any_batch_from_bytes_and_path(mlp: Any, tmp_path: Path) -> None:
    model, pte = mlp
    x = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)  # > MAX_BATCH: chunked
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    m = et.open_model(pte, threads=1)
    assert m.max_batch == MAX_BATCH and m.runtime_name == "executorch" and m.runtime_version.startswith("1.5")
    got = m.predict(x)
    assert got.shape == (40, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-5)
    path = tmp_path / "m.pte"
    path.write_bytes(pte)
    np.testing.assert_allclose(et.ExecutorchModel(path).predict(x, batch_size=7), ref, atol=1e-5)
    # outputs are copies, not views of the method's buffers the next call overwrites
    first = m.run_batch(x[:2])
    m.run_batch(x[2:4])
    np.testing.assert_allclose(first, ref[:2], atol=1e-5)
    assert m.predict_all({"anything": x})["output_0"].shape == (40, 3)  # one array for a one-input program
    m.timed_call(x)()


@pytest.mark.slow  # a whole pipeline / real lowering: seconds of CPU (fast tier < 2 min)
def test_two_inputs_by_teacher_name_in_order_int8(two_inputs: Any) -> None:
    model, pte = two_inputs
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(20, 6)).astype(np.float32)
    ids = rng.integers(0, 50, size=(20, 5)).astype(np.int32)  # int32 data, int64 program: cast
    with torch.no_grad():
        ref = [o.numpy() for o in model(torch.from_numpy(feats), torch.from_numpy(ids.astype(np.int64)))]
    m = et.open_model(pte, metadata=_names())
    got = m.predict_all({"ids": ids, "feats": feats})  # by name, whatever the dict's order
    assert list(got) == ["scores", "value"]
    for g, r in zip(got.values(), ref, strict=True):
        assert g.shape == r.shape and g.dtype == np.float32
        # mean error against the output's range: an input beyond the calibrated range saturates one sample
        assert float(np.mean(np.abs(g - r))) <= 0.05 * (float(np.max(np.abs(r))) + 1e-3)
    m.timed_call_all({"feats": feats, "ids": ids})()
    assert m.io_quantization() is None and m.input_quantization is None and m.layout is None


def test_bad_inputs_get_readable_errors(mlp: Any, two_inputs: Any) -> None:
    single = et.open_model(mlp[1])
    with pytest.raises(et.ArtifactRunError, match=r"per-sample shape \[10\], the program takes \[12\]"):
        single.predict(np.zeros((3, 10), np.float32))
    with pytest.raises(et.ArtifactRunError, match=r"batch of 17: the program takes 1 to 16"):
        single.run_batch(np.zeros((17, 12), np.float32))
    with pytest.raises(et.ArtifactRunError, match="non-empty batch"):
        single.predict(np.zeros((0, 12), np.float32))
    with pytest.raises(et.ArtifactRunError, match=r"takes 1 inputs \(input_0\), got 2"):
        single.check_inputs([np.zeros((1, 12), np.float32)] * 2)

    multi = et.open_model(two_inputs[1], metadata=_names())
    feats, ids = np.zeros((2, 6), np.float32), np.zeros((2, 5), np.int64)
    with pytest.raises(et.ArtifactRunError, match=r"input 'ids': dtype float32, the program takes int64"):
        multi.predict_all({"feats": feats, "ids": ids.astype(np.float32)})
    with pytest.raises(et.ArtifactRunError, match=r"takes inputs \['ids'\] that the data does not have"):
        multi.predict_all({"feats": feats})
    with pytest.raises(et.ArtifactRunError, match=r"share one batch size, got \[2, 3\]"):
        multi.predict_all({"feats": feats, "ids": np.zeros((3, 5), np.int64)})
    with pytest.raises(et.ArtifactRunError, match="predict feeds one float batch"):
        multi.predict(feats)
    with pytest.raises(et.ArtifactRunError, match="the program has 2 inputs, names given for 1"):
        et.ExecutorchModel(two_inputs[1], input_names=["feats"])


def test_unreadable_program_is_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(et.ArtifactRunError, match=r"ExecuTorch cannot load the \.pte program"):
        et.open_model(b"not a program at all")
    with pytest.raises(et.ArtifactRunError, match=r"cannot read missing\.pte"):
        et.open_model(tmp_path / "missing.pte")
    with pytest.raises(et.ArtifactRunError, match="threads must be at least 1"):
        et.set_threads(0)


def test_missing_executorch_is_runtime_unavailable(monkeypatch: pytest.MonkeyPatch, mlp: Any) -> None:
    # None in sys.modules makes `import executorch.runtime` raise ImportError, as on a host without it.
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)
    with pytest.raises(et.RuntimeUnavailable, match=r"executorch is not installed: pip install 'executorch>=1.5"):
        et.open_model(mlp[1])
    monkeypatch.setitem(sys.modules, "executorch.extension.pybindings.portable_lib", None)
    with pytest.raises(et.RuntimeUnavailable, match="executorch is not installed"):
        et.set_threads(1)
    assert issubclass(et.RuntimeUnavailable, et.ArtifactRunError)


def test_installed_reports_without_importing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert et.installed() == ("executorch", et.importlib.metadata.version("executorch"))
    monkeypatch.setattr(et.importlib.util, "find_spec", lambda name: None)
    assert et.installed() is None
