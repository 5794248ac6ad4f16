"""`edgedistill compress`: option handling, exit codes and the rendering of events and results."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from edgedistill.contracts.events import PipelineEvent
from edgedistill.workers import cli
from edgedistill.workers.pipeline import runner
from edgedistill.workers.pipeline.context import ArtifactRecord
from edgedistill.workers.pipeline.runner import PipelineResult


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    teacher = tmp_path / "teacher.onnx"
    teacher.write_bytes(b"placeholder")  # the CLI only checks existence; the pipeline sniffs it
    data = tmp_path / "data.npz"
    data.write_bytes(b"placeholder")
    return {"teacher": teacher, "data": data, "out": tmp_path / "out"}


def _argv(inputs: dict[str, Path], *extra: str) -> list[str]:
    return [str(inputs["teacher"]), "--data", str(inputs["data"]), "--out", str(inputs["out"]), *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--profile", "no-such-device"], "unknown device profile 'no-such-device'"),
        (["--profile", "mcu-cortex-m4", "--epochs", "0"], "invalid options: epochs"),
        (["--profile", "mcu-cortex-m4", "--width", "2"], "student.width"),
    ],
)
def test_usage_errors_exit_2(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert cli.main(_argv(inputs, *extra)) == 2
    assert message in capsys.readouterr().err


def test_missing_files_and_full_out_dir_are_usage_errors(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = dict(inputs, teacher=inputs["teacher"].with_name("nope.onnx"))
    assert cli.main(_argv(missing, "--profile", "cpu-x86")) == 2
    assert "does not exist" in capsys.readouterr().err
    inputs["out"].mkdir()
    (inputs["out"] / "x").write_text("x")
    assert cli.main(_argv(inputs, "--profile", "cpu-x86")) == 2
    assert "not empty" in capsys.readouterr().err


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["teacher.onnx"]) == 2
    assert "--profile" in capsys.readouterr().err


def test_data_is_required_unless_the_method_is_data_free_or_auto(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(inputs["teacher"]), "--out", str(inputs["out"]), "--profile", "cpu-x86"]
    assert cli.main(argv) == 2
    assert "--data is required unless --method is data_free or auto" in capsys.readouterr().err
    args = cli.build_parser().parse_args([*argv, "--method", "data_free"])
    spec = cli.build_spec(args)
    assert spec.data_path is None and spec.options.method == "data_free"
    assert cli.main(["--help"]) == 0


def test_options_file_then_flags(inputs: dict[str, Path], tmp_path: Path) -> None:
    opts = tmp_path / "options.yaml"
    opts.write_text("epochs: 5\nalpha: 0.5\nstudent:\n  width: 16\n")
    args = cli.build_parser().parse_args(
        _argv(inputs, "--profile", "mcu-cortex-m7", "--options", str(opts), "--epochs", "7", "--depth", "2")
    )
    spec = cli.build_spec(args)
    assert (spec.options.epochs, spec.options.alpha) == (7, 0.5)
    assert (spec.options.student.width, spec.options.student.depth) == (16, 2)
    assert spec.profile.name == "mcu-cortex-m7"

    opts.write_text("- not\n- a mapping\n")
    with pytest.raises(cli.UsageError, match="must hold a mapping"):
        cli.build_spec(args)
    opts.write_text("epochs: [unclosed\n")
    with pytest.raises(cli.UsageError, match="not valid YAML"):
        cli.build_spec(args)
    opts.write_text("!!python/object/apply:os.system ['echo hi']\n")  # safe_load refuses tags that run code
    with pytest.raises(cli.UsageError, match="not valid YAML"):
        cli.build_spec(args)


def test_pipeline_errors_exit_1_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    data = tmp_path / "data.npz"
    data.write_bytes(b"unused")
    code = cli.main(
        [str(teacher), "--data", str(data), "--profile", "cpu-x86", "--out", str(tmp_path / "o"), "--quiet"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "error:" in err and "raw Python pickle" in err and "(stage load)" in err
    assert not (tmp_path / "o").exists()


# A host timing as the benchmark step records it (the typed report needs every figure of one).
HOST_TIMING = {"artifact_kind": "onnx_int8", "source": "host", "runtime": "onnxruntime", "threads": 1}
HOST_TIMING |= {"p50_ms": 0.0123, "p90_ms": 0.013, "p99_ms": 0.014, "mean_ms": 0.0125}


def test_success_renders_progress_and_summary(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_run(spec: Any, on_event: Any = None, should_cancel: Any = None) -> PipelineResult:
        for event in (
            PipelineEvent("stage_started", "distill", progress=5.0),
            PipelineEvent("progress", "distill", {"message": "student ds_cnn2d width 8"}),
            PipelineEvent("epoch", "distill", {"epoch": 3, "epochs": 10, "val_fidelity": 0.9, "val_accuracy": 0.8}),
            PipelineEvent("warning", "distill", {"message": "something to know"}),
            PipelineEvent("artifact", "export", {"kind": "onnx_fp32", "filename": "s.onnx", "size_bytes": 1234}),
            PipelineEvent("stage_finished", "distill", {"seconds": 1.5}, progress=70.0),
        ):
            on_event(event)
        spec.out_dir.mkdir()
        art = spec.out_dir / "s.onnx"
        art.write_bytes(b"x")
        report = {
            "metrics": {
                "teacher": {"accuracy": 0.99, "top1_agreement": 1.0, "runtime": "onnxruntime"},
                "onnx_int8": {"accuracy": 0.95, "top1_agreement": 0.96, "drop_vs_student_fp32_pp": 0.3},
            },
            "sizes": {"artifact_bytes": {"onnx_int8": 4321}},
            "latency": {"measurements": [HOST_TIMING]},
            "headline": {"primary_artifact": "onnx_int8", "params_x": 12.0, "quality_kept_pct": 96.0},
        }
        arts = {"onnx_int8": ArtifactRecord("onnx_int8", art, "ab" * 32, 1)}
        return PipelineResult(out_dir=spec.out_dir, report=report, artifacts=arts, warnings=["w1"], seconds=2.0)

    monkeypatch.setattr(runner, "run_pipeline", fake_run)
    assert cli.main(_argv(inputs, "--profile", "cpu-x86")) == 0
    captured = capsys.readouterr()
    assert "something to know" in captured.err and "s.onnx" in captured.err and "distill (1.5 s)" in captured.err
    out = captured.out
    assert "95.00%" in out and "96.00%" in out and "+0.30" in out and "4,321 B" in out and "0.012" in out
    assert "12.0x fewer parameters" in out and "96.0% of the teacher's quality kept" in out
    assert "warning: w1" in out and "done in 2.0 s" in out


@pytest.mark.parametrize(("met", "require", "code"), [(False, True, 6), (False, False, 0), (True, True, 0)])
def test_require_quality_exits_6_for_a_student_below_its_target(
    inputs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    met: bool,
    require: bool,
    code: int,
) -> None:
    from edgedistill.contracts.verdict import quality_verdict

    seen: list[float] = []

    def fake_run(spec: Any, on_event: Any = None, should_cancel: Any = None) -> PipelineResult:
        seen.append(spec.options.quality_target)
        spec.out_dir.mkdir()
        student = 0.95 if met else 0.5
        q = quality_verdict(metric="accuracy", teacher=0.96, student=student, target=spec.options.quality_target,
                            samples=150, variant="onnx_int8")  # fmt: skip
        report = {"headline": {"primary_artifact": "onnx_int8"}, "quality": q}
        return PipelineResult(out_dir=spec.out_dir, report=report, artifacts={}, warnings=[], seconds=1.0)

    monkeypatch.setattr(runner, "run_pipeline", fake_run)
    extra = ["--quality-target", "0.98", *(["--require-quality"] if require else [])]
    assert cli.main(_argv(inputs, "--profile", "cpu-x86", "--quiet", *extra)) == code
    assert seen == [0.98]
    out, err = capsys.readouterr()
    if met:
        assert "quality: meets target: onnx_int8 keeps 99.0 %" in out
    else:
        assert "warning: quality below target: onnx_int8 keeps 52.1 % of the teacher's accuracy" in out
        assert "; target 98.0 %), on 150 test samples (a small test split" in out
    assert ("--require-quality" in err) is (code == 6)
