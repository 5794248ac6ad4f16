"""`edgedistill quickstart`: a first job end to end on the embedded defaults, in one command.

1. makes a sample teacher: a small CNN trained on scikit-learn's bundled digits (8x8 images, 10
   classes), exported to ONNX, and the transfer set digits.npz (x, y) beside it;
2. starts `edgedistill serve` (embedded Redis, SQLite and artifact folder; a free port) unless
   --url points at a running server;
3. submits a job for --profile with `edgedistill submit --wait --download`, which prints the same
   summary `compress` prints, then stops the server it started and says where everything is.

Exit status: that of `edgedistill submit` (0 success), or 3 when the server did not come up."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import FrameType

import numpy as np

DEFAULT_EPOCHS = 30  # a first result in about a minute on 2 idle CPU cores
SERVE_START_TIMEOUT_S = 180.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgedistill quickstart", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("quickstart"), help="folder for the sample and the artifacts")
    p.add_argument("--profile", default="mcu-cortex-m4", help="device profile (default mcu-cortex-m4)")
    p.add_argument("--url", help="use this running server (with --api-key or EDGEDISTILL_API_KEY) instead")
    p.add_argument("--api-key", default=os.environ.get("EDGEDISTILL_API_KEY"))
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"distillation epochs (default {DEFAULT_EPOCHS})")
    return p


def make_sample(folder: Path, *, epochs: int = 4, seed: int = 0) -> tuple[Path, Path]:
    """teacher.onnx (a ~25k-parameter CNN trained on sklearn's digits) and digits.npz (x, y)."""
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    folder.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 40), nn.ReLU(), nn.Linear(40, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    teacher, data = folder / "teacher.onnx", folder / "digits.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (xt[:2],), str(teacher), dynamo=False, input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        )  # fmt: skip
    np.savez(data, x=x, y=y)
    return teacher, data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_serve(log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """`edgedistill serve` on a free port; returns (process, url, the local tenant's API key)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "edgedistill.service.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "API key for tenant" in text and " ready." in text:  # the API answered and the worker is up
            key = text.split("API key for tenant 'local': ", 1)[1].split()[0]
            return proc, f"http://127.0.0.1:{port}", key
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    _stop(proc)
    raise RuntimeError(f"edgedistill serve did not come up; its output is in {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # serve stops its API, worker and Redis on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _interrupt(_sig: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM too: the finally below stops the server this run started


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    out = args.out.resolve()
    print(f"making the sample teacher and transfer set in {out} ...", flush=True)
    teacher, data = make_sample(out)
    print(f"  {teacher}\n  {data}", flush=True)

    from edgedistill.service import submit_cli

    artifacts = out / "artifacts"
    server: subprocess.Popen[bytes] | None = None
    url, key = args.url, args.api_key
    if url is None:
        log = out / "serve.log"
        print(f"starting edgedistill serve (embedded defaults; its output: {log}) ...", flush=True)
        try:
            server, url, key = _start_serve(log)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        print(f"  {url}  (API key {key})", flush=True)
    try:
        submit_args = [str(teacher), "--data", str(data), "--profile", args.profile, "--set", f"epochs={args.epochs}"]
        submit_args += ["--download", str(artifacts), "--url", str(url), "--api-key", str(key or "")]
        code = submit_cli.main(submit_args)
    finally:
        if server is not None:
            print("stopping the server it started ...", flush=True)
            _stop(server)
    if code == 0:
        print(f"\nartifacts: {artifacts}  (summary.md, report.json, each model with its .json facts)")
        if server is not None:
            print("the job stays in this folder's .edgedistill: `edgedistill serve` here shows it in the dashboard")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
