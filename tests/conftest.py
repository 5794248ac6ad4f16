"""Shared fixtures. This folder is on sys.path (pytest rootdir conftest), so tests import
`factories` directly. Heavy imports stay inside fixtures: the service tests never load torch."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_teacher_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained digits teacher saved as onnx, torchscript and pt2, plus data.npz (x, y)."""
    import torch
    from factories import SUFFIX, digits, digits_teacher, save_teacher, write_npz

    torch.set_num_threads(1)  # the test machine has 2 cores shared by several runs
    x, y = digits()
    root = tmp_path_factory.mktemp("digits")
    model = digits_teacher()
    example = torch.from_numpy(x[:2])
    files = {fmt: save_teacher(model, example, root / f"teacher{SUFFIX[fmt]}", fmt) for fmt in SUFFIX}
    files["npz"] = write_npz(root / "data.npz", x=x, y=y)
    return files


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: their stack and Chromium are the heaviest and the least isolated."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
