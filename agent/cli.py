"""edgedistill-agent: `run --artifact ID` measures one artifact; `watch` measures every artifact of the
device's profile it has not measured yet, polling the service.

Exit codes: 0 measured and ok; 1 error (network, server, runtime); 2 usage/configuration;
3 an artifact's sha256 did not match (nothing run or posted); 4 posted, and the service marks the
artifact failing on this device (its outputs disagree with the host's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from edgedistill.agent import __version__
from edgedistill.agent.api import DeviceApi
from edgedistill.agent.errors import (
    EXIT_ERROR,
    EXIT_FAILING,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    AgentError,
    ApiError,
    ConfigError,
)
from edgedistill.agent.measure import BenchOptions, Result, measure_artifact
from edgedistill.contracts import artifact_kinds
from edgedistill.runtimes import installed_runtimes, runnable_kinds

URL_ENV = "EDGEDISTILL_URL"
TOKEN_ENV = "EDGEDISTILL_DEVICE_TOKEN"
MEASURABLE_KINDS = artifact_kinds.measured_by("agent")
# Worst first: what a multi-artifact pass exits with when several things happened.
SEVERITY = (EXIT_INTEGRITY, EXIT_USAGE, EXIT_ERROR, EXIT_FAILING, EXIT_OK)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, help=f"service URL (default ${URL_ENV})")
    p.add_argument(
        "--token", default=None, help=f"device token (default ${TOKEN_ENV}; the variable keeps it out of `ps`)"
    )
    p.add_argument("--runs", type=int, default=100, help="timed runs per artifact (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up runs (default 10)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: the device profile's)")
    p.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout in seconds (default 60)")
    p.add_argument("--json", action="store_true", help="print each result as one JSON line")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a plain http:// service URL (anyone on the path could swap the models it runs and the results)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgedistill-agent",
        description="Measure edgedistill artifacts on this device (latency, agreement with the host) and report.",
    )
    parser.add_argument("--version", action="version", version=f"edgedistill-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure one artifact and post the result")
    _common(run)
    run.add_argument("--artifact", required=True, help="artifact id")
    watch = sub.add_parser("watch", help="measure every new artifact of this device's profile")
    _common(watch)
    watch.add_argument("--interval", type=float, default=60.0, help="seconds between polls (default 60)")
    watch.add_argument("--once", action="store_true", help="one pass over pending artifacts, then exit")
    watch.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (default: a fresh process per artifact, so peak RSS is that artifact's)",
    )
    return parser


def _config(args: argparse.Namespace) -> tuple[str, str]:
    url = args.url or os.environ.get(URL_ENV)
    token = args.token or os.environ.get(TOKEN_ENV)
    if not url:
        raise ConfigError(f"no service URL: pass --url or set {URL_ENV}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("https", "http"):
        raise ConfigError(f"the service URL must start with https:// (got {url[:80]!r})")
    if scheme == "http" and not args.insecure:
        raise ConfigError(
            "the service URL is plain http: whoever is on the network path could rewrite the artifacts this agent "
            "runs, their sha256 and the results it posts. Use https://, or pass --insecure on a network you trust"
        )
    if not token:
        raise ConfigError(f"no device token: pass --token or set {TOKEN_ENV}")
    if not token.startswith("edd_"):
        raise ConfigError("that is not a device token (they start with edd_): register a device with POST /devices")
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise ConfigError("--runs must be >= 1, --warmup >= 0 and --threads >= 1")
    return url, token


def _options(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(runs=args.runs, warmup=args.warmup, threads=args.threads)


def _say(message: str) -> None:
    print(f"edgedistill-agent: {message}", file=sys.stderr, flush=True)


def _report(result: Result, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"artifact_id": result.artifact_id, "kind": result.kind, "measurement": result.measurement,
                          "verdict": result.verdict}), flush=True)  # fmt: skip
    else:
        print(result.summary(), flush=True)
    return EXIT_FAILING if result.failing else EXIT_OK


def _worst(codes: Sequence[int]) -> int:
    return next((c for c in SEVERITY if c in codes), EXIT_OK)


# --------------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------------


def _find(api: DeviceApi, artifact_id: str) -> dict[str, Any]:
    found = api.artifacts(artifact_id=artifact_id)
    if found:
        return found[0]
    try:
        art = api.artifact(artifact_id)
    except ApiError as exc:
        if exc.status == 404:
            raise AgentError(
                f"artifact {artifact_id} not found for this device (no such artifact, or another tenant's, or of a "
                "job for another profile)"
            ) from exc
        raise
    raise AgentError(
        f"artifact {artifact_id} ({art.get('kind')}) is not runnable here: the agent runs "
        f"{', '.join(MEASURABLE_KINDS)} artifacts of succeeded jobs"
    )


def cmd_run(args: argparse.Namespace) -> int:
    url, token = _config(args)
    with DeviceApi(url, token, timeout=args.timeout) as api:
        me = api.me()
        artifact = _find(api, args.artifact)
        threads = args.threads or int(me.get("threads") or 1)
        result = measure_artifact(api, artifact, threads=threads, options=_options(args))
    return _report(result, args.json)


# --------------------------------------------------------------------------------------------------
# watch
# --------------------------------------------------------------------------------------------------


def _child_command(args: argparse.Namespace, url: str, artifact_id: str) -> list[str]:
    cmd = [sys.executable, "-m", "edgedistill.agent.cli", "run", "--artifact", artifact_id, "--url", url]
    cmd += ["--runs", str(args.runs), "--warmup", str(args.warmup), "--timeout", str(args.timeout)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if args.json:
        cmd.append("--json")
    if args.insecure:
        cmd.append("--insecure")
    return cmd


def _measure_isolated(args: argparse.Namespace, url: str, token: str, artifact_id: str) -> int:
    """A fresh interpreter per artifact: its peak RSS is that artifact's alone, and a runtime that crashes
    takes only that process down. The token travels in the environment, never on the command line."""
    env = {**os.environ, TOKEN_ENV: token}
    proc = subprocess.run(_child_command(args, url, artifact_id), env=env, check=False)
    if proc.returncode < 0:
        _say(f"measuring {artifact_id} crashed (signal {-proc.returncode})")
        return EXIT_ERROR
    return proc.returncode


def cmd_watch(args: argparse.Namespace) -> int:
    url, token = _config(args)
    kinds = runnable_kinds(MEASURABLE_KINDS)
    if not kinds:
        packages = sorted({str(artifact_kinds.get(k).package) for k in MEASURABLE_KINDS})
        raise ConfigError(f"no runtime installed: pip install {' and/or '.join(packages)}")
    have = installed_runtimes(kinds)
    _say(f"runtimes here: {', '.join(f'{k}: {v}' for k, v in have.items())}; measuring {', '.join(kinds)}")
    given_up: set[str] = set()  # failed in this process's life: not retried every poll
    codes: list[int] = []
    with DeviceApi(url, token, timeout=args.timeout) as api:
        me = api.me()
        _say(f"device {me.get('name')} (profile {me.get('profile')}); polling {url} every {args.interval:g} s")
        threads = args.threads or int(me.get("threads") or 1)
        while True:
            try:
                pending = [a for a in api.artifacts(pending=True, kinds=kinds) if a["id"] not in given_up]
            except ApiError as exc:
                if args.once or exc.status in (401, 403):
                    raise
                _say(f"{exc}; retrying in {args.interval:g} s")
                pending = []
            for artifact in pending:
                _say(f"measuring {artifact['kind']} {artifact['id']} (job {artifact.get('job_id')})")
                if args.in_process:
                    code = _measure_here(api, artifact, threads, args)
                else:
                    code = _measure_isolated(args, url, token, str(artifact["id"]))
                if code not in (EXIT_OK, EXIT_FAILING):
                    given_up.add(str(artifact["id"]))
                codes.append(code)
            if args.once:
                return _worst(codes)
            time.sleep(args.interval)


def _measure_here(api: DeviceApi, artifact: dict[str, Any], threads: int, args: argparse.Namespace) -> int:
    try:
        return _report(measure_artifact(api, artifact, threads=threads, options=_options(args)), args.json)
    except AgentError as exc:
        _say(str(exc))
        return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        return cmd_watch(args)
    except AgentError as exc:
        _say(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
