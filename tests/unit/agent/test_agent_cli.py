from __future__ import annotations

import pytest

from edgedistill.agent.cli import _worst, build_parser, main
from edgedistill.agent.errors import EXIT_ERROR, EXIT_FAILING, EXIT_INTEGRITY, EXIT_OK, EXIT_USAGE


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEDISTILL_URL", raising=False)
    monkeypatch.delenv("EDGEDISTILL_DEVICE_TOKEN", raising=False)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run", "--artifact", "a"], "no service URL"),
        (["run", "--artifact", "a", "--url", "https://x"], "no device token"),
        (["run", "--artifact", "a", "--url", "https://x", "--token", "edk_apikey"], "not a device token"),
        (["watch", "--url", "https://x", "--token", "edd_t", "--runs", "0"], "--runs must be"),
        (["run", "--artifact", "a", "--url", "http://x", "--token", "edd_t"], "Use https://, or pass --insecure"),
        (["run", "--artifact", "a", "--url", "ftp://x", "--token", "edd_t"], "must start with https://"),
    ],
)
def test_configuration_errors_exit_2(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert words in capsys.readouterr().err


def test_env_configures_and_unreachable_service_is_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEDISTILL_URL", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setenv("EDGEDISTILL_DEVICE_TOKEN", "edd_x")
    assert main(["run", "--artifact", "a", "--timeout", "2", "--insecure"]) == EXIT_ERROR
    assert "cannot reach the service" in capsys.readouterr().err


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["watch"])
    assert args.interval == 60.0 and not args.once and args.runs == 100 and args.warmup == 10
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run"])  # --artifact is required


def test_worst_exit_code() -> None:
    assert _worst([]) == EXIT_OK
    assert _worst([EXIT_OK, EXIT_FAILING]) == EXIT_FAILING
    assert _worst([EXIT_FAILING, EXIT_ERROR]) == EXIT_ERROR
    assert _worst([EXIT_ERROR, EXIT_INTEGRITY, EXIT_OK]) == EXIT_INTEGRITY
