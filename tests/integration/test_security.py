"""Security hardening (issue 11) against real processes: uvicorn, redis-server, one Celery worker
process (concurrency 1, so a held slot would show), SQLite on disk.

Receivers listen on 127.0.0.2, the one internal address this stack's operator allowlists; a listener
on 127.0.0.1 stands for everything internal and must never see a connection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from stack import Stack, running_stack, wait_until

from edgedistill.client import Client
from edgedistill.service.webhooks import ReplayGuard, VerificationError, verify

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FAST = {"epochs": 3, "patience": 3, "benchmark_runs": 3, "benchmark_warmup": 1, "calibration_samples": 32}
WEBHOOK_TIMEOUT_S = 8
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Listener:
    """A raw TCP listener that records what connects. mode: 'ok' answers 204 at once; 'tarpit' sends
    a status line, then one header line per second for `hold_s` (a receiver that never finishes)."""

    def __init__(self, host: str, mode: str = "ok", hold_s: float = 120) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.mode, self.hold_s = mode, hold_s
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.connections = 0
        self.closed_at: list[float] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("Content-Length", "0"))
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append((headers, body))

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            self._read_request(conn)
            if self.mode == "ok":
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                deadline = time.monotonic() + self.hold_s
                while time.monotonic() < deadline and not self._stop.is_set():
                    conn.sendall(b"X-Slow: 1\r\n")
                    time.sleep(1)
        except OSError:
            pass
        finally:
            self.closed_at.append(time.time())
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("security")
    env = {
        "EDGEDISTILL_WEBHOOK_ALLOWLIST": "127.0.0.2",
        "EDGEDISTILL_WEBHOOK_TIMEOUT_S": str(WEBHOOK_TIMEOUT_S),
        "EDGEDISTILL_WEBHOOK_RETRIES": "0",
        "EDGEDISTILL_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),  # a dashboard form cap a test can pass quickly
    }
    with running_stack(tmp, f"sqlite:///{tmp / 'data' / 'edgedistill.db'}", env=env) as s:
        yield s


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, str]:
    return {"a": stack.create_key("sec-a"), "b": stack.create_key("sec-b")}


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _webhook_secret(stack: Stack, key: str) -> str:
    r = httpx.post(f"{stack.url}/api/v1/webhook-secret", headers=_h(key), timeout=30)
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


class Browser:
    """A browser's cookie jar over plain-HTTP loopback: the dashboard marks its cookies Secure there (as
    browsers accept on localhost), which httpx's jar would never send back, so cookies are kept by hand."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        header = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        r = self.http.request(method, path, headers={"Cookie": header} if header else {}, **kw)
        for line in r.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0].strip('"')
            if value and "Max-Age=0" not in line:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return r

    def csrf(self, path: str) -> str:
        match = CSRF_RE.search(self.request("GET", path).text)
        assert match
        return match.group(1)

    def close(self) -> None:
        self.http.close()


def _login(stack: Stack, key: str) -> Browser:
    browser = Browser(stack.url)
    r = browser.request("POST", "/ui/login", data={"api_key": key, "csrf_token": browser.csrf("/ui/login")})
    assert r.status_code == 303, r.text
    return browser


def _old_scheme_cookie(secret: str, key_id: str) -> str:
    """The session cookie as it used to be: {"k": key id, "t": now} signed under secret_key."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    payload = b64(json.dumps({"k": key_id, "t": int(time.time())}).encode())
    mac_key = hmac.new(secret.encode(), b"edgedistill.web.session", hashlib.sha256).digest()
    return f"{payload}.{b64(hmac.new(mac_key, payload.encode(), hashlib.sha256).digest())}"


def test_forged_session_fails_and_logout_ends_a_copied_cookie(stack: Stack, keys: dict[str, str]) -> None:
    from sqlalchemy import create_engine, text

    victim = _login(stack, keys["a"])  # makes the install's secret_key exist, as any dashboard use does
    assert victim.request("GET", "/ui/jobs").status_code == 200
    engine = create_engine(stack.database_url)
    with engine.connect() as conn:
        key_id = conn.execute(text("SELECT id FROM api_keys WHERE prefix = :p"), {"p": keys["a"][:12]}).scalar_one()
    engine.dispose()
    secret_key = (stack.data_dir / "secret_key").read_text().strip()
    attacker = Browser(stack.url)
    attacker.cookies["edgedistill_session"] = _old_scheme_cookie(secret_key, key_id)
    r = attacker.request("GET", "/ui/jobs")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")

    copied = victim.cookies["edgedistill_session"]
    r = victim.request("POST", "/ui/logout", data={"csrf_token": victim.csrf("/ui/jobs")})
    assert r.status_code == 303 and "edgedistill_session" not in victim.cookies
    thief = Browser(stack.url)
    thief.cookies["edgedistill_session"] = copied
    assert thief.request("GET", "/ui/jobs").status_code == 303
    for b in (victim, attacker, thief):
        b.close()


def test_internal_webhook_urls_are_refused_at_submit_and_never_connected(
    stack: Stack, keys: dict[str, str], digits_teacher_files: dict[str, Path]
) -> None:
    _webhook_secret(stack, keys["a"])
    inside = Listener("127.0.0.1")
    p = inside.port
    forms = [
        f"http://127.0.0.1:{p}/", f"http://localhost:{p}/", f"http://[::1]:{p}/", f"http://0.0.0.0:{p}/",
        f"http://2130706433:{p}/", f"http://0x7f000001:{p}/", f"http://127.1:{p}/", f"http://[::ffff:127.0.0.1]:{p}/",
        "http://localhost:6379/", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/",
        "http://192.168.1.1/", "http://metadata.google.internal/computeMetadata/v1/", "http://100.64.0.1/",
        "http://224.0.0.1/", "http://[fe80::1]/", "http://[fd00::1]/",
    ]  # fmt: skip
    try:
        with Client(stack.url, keys["a"]) as client:
            model = client.upload_model(digits_teacher_files["onnx"])
        for url in forms:
            body = {"model_id": model["id"], "device_profile": "cpu-x86", "webhook_url": url}
            r = httpx.post(f"{stack.url}/api/v1/jobs", json=body, headers=_h(keys["a"]), timeout=30)
            assert r.status_code == 422, (url, r.text)
            detail = r.json()["detail"][0]
            assert detail["loc"] == ["body", "webhook_url"] and "webhook" in detail["msg"], detail
        jobs = httpx.get(f"{stack.url}/api/v1/jobs", headers=_h(keys["a"]), timeout=30).json()["items"]
        assert jobs == []  # nothing was queued that could connect later
        time.sleep(1)
        assert inside.connections == 0
    finally:
        inside.stop()


def _job(stack: Stack, key: str, job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.url}/api/v1/jobs/{job_id}", headers=_h(key), timeout=30)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def _deliveries(stack: Stack, key: str, job_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.url}/api/v1/jobs/{job_id}/webhook-deliveries", headers=_h(key), timeout=30)
    r.raise_for_status()
    body: list[dict[str, Any]] = r.json()
    return body


@pytest.mark.slow  # runs real jobs
def test_allowlisted_receiver_gets_signed_timestamped_deliveries_and_replays_are_refused(
    stack: Stack, keys: dict[str, str], digits_teacher_files: dict[str, Path]
) -> None:
    secret = _webhook_secret(stack, keys["b"])
    receiver = Listener("127.0.0.2")
    try:
        with Client(stack.url, keys["b"]) as client:
            job = client.submit(
                digits_teacher_files["onnx"], data=digits_teacher_files["npz"], profile="cpu-x86", options=FAST,
                webhook_url=f"http://127.0.0.2:{receiver.port}/hook",
            )  # fmt: skip
            job.wait(timeout=600)
            assert job.status == "succeeded", job.data
        wait_until(lambda: receiver.requests, 30, "the webhook delivery")
        headers, body = receiver.requests[0]
        assert json.loads(body)["job"]["id"] == job.id
        guard = ReplayGuard()
        verified = verify(body, headers, secret, guard=guard)
        assert abs(verified.timestamp - time.time()) < 120
        with pytest.raises(VerificationError, match="already received"):
            verify(body, headers, secret, guard=guard)  # the same delivery played again
        with pytest.raises(VerificationError, match="more than"):
            verify(body, headers, secret, now=time.time() + 3600)  # replayed an hour later
        with pytest.raises(VerificationError, match="signature"):
            verify(body, headers, "whsec_someone-elses")  # another tenant's secret
        log = wait_until(
            lambda: [d for d in _deliveries(stack, keys["b"], job.id) if d["state"] != "pending"], 30, "the log"
        )
        assert log[0]["state"] == "delivered" and log[0]["status_code"] == 204 and log[0]["address"] == "127.0.0.2"
        assert log[0]["id"] == headers["X-Edgedistill-Delivery"]
    finally:
        receiver.stop()


@pytest.mark.slow  # runs real jobs
def test_a_tarpit_receiver_does_not_delay_another_tenants_job(
    stack: Stack, keys: dict[str, str], digits_teacher_files: dict[str, Path]
) -> None:
    """One worker slot. Tenant a's webhook goes to a receiver that trickles a header line per second for
    two minutes; tenant b's job, queued behind a's, must start while that delivery is still held, and the
    delivery must be cut at its total deadline, not at 120 s."""
    _webhook_secret(stack, keys["a"])
    tarpit = Listener("127.0.0.2", mode="tarpit", hold_s=120)
    try:
        with Client(stack.url, keys["a"]) as a, Client(stack.url, keys["b"]) as b:
            slow = a.submit(
                digits_teacher_files["onnx"], data=digits_teacher_files["npz"], profile="cpu-x86", options=FAST,
                webhook_url=f"http://127.0.0.2:{tarpit.port}/hook",
            )  # fmt: skip
            other = b.submit(digits_teacher_files["onnx"], data=digits_teacher_files["npz"], profile="cpu-x86",
                             options=FAST)  # fmt: skip
            slow.wait(timeout=600)
            other.wait(timeout=600)
            assert slow.status == "succeeded" and other.status == "succeeded"
        wait_until(lambda: tarpit.closed_at, 60, "the tarpit delivery to be cut off")
        a_done = datetime.fromisoformat(_job(stack, keys["a"], slow.id)["finished_at"]).timestamp()
        b_started = datetime.fromisoformat(_job(stack, keys["b"], other.id)["started_at"]).timestamp()
        assert a_done <= b_started < tarpit.closed_at[0], (a_done, b_started, tarpit.closed_at)
        # Cut at the deadline: far sooner than the two minutes the tarpit would have held it.
        assert tarpit.closed_at[0] - a_done < 60
        log = wait_until(
            lambda: [d for d in _deliveries(stack, keys["a"], slow.id) if d["state"] != "pending"], 30, "the log"
        )
        assert log[0]["state"] == "failed" and f"within {WEBHOOK_TIMEOUT_S} s" in log[0]["error"]
    finally:
        tarpit.stop()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_at_rest_are_the_owners_only(
    stack: Stack, keys: dict[str, str], digits_teacher_files: dict[str, Path]
) -> None:
    with Client(stack.url, keys["a"]) as client:
        client.upload_model(digits_teacher_files["onnx"])
        client.upload_dataset(digits_teacher_files["npz"])
    data = stack.data_dir
    db = data / "edgedistill.db"
    files = [db, *[p for p in (data / "edgedistill.db-wal", data / "edgedistill.db-shm") if p.exists()]]
    files += [data / "secret_key"] if (data / "secret_key").exists() else []
    objects = data / "artifacts" / "objects"
    stored = [p for p in objects.rglob("*") if p.is_file()]
    assert len(stored) >= 2  # the teacher and the data set, plus any job's artifacts
    for path in [*files, *stored]:
        assert _mode(path) == 0o600, (path, oct(_mode(path)))
    folders = [data / "artifacts", objects, *[p for p in objects.rglob("*") if p.is_dir()]]
    folders += [p for p in (data / "tmp", data / "artifacts" / "tmp") if p.exists()]
    for folder in folders:
        assert _mode(folder) == 0o700, (folder, oct(_mode(folder)))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _npz_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    import zipfile

    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    return path


def _finished_job(stack: Stack, key: str, files: dict[str, Path]) -> str:
    """A succeeded job of the tenant (the earlier tests made one; run one when this test runs alone)."""
    jobs = httpx.get(f"{stack.url}/api/v1/jobs?status=succeeded", headers=_h(key), timeout=30).json()["items"]
    if jobs:
        return str(jobs[0]["id"])
    with Client(stack.url, key) as client:
        job = client.submit(files["onnx"], data=files["npz"], profile="cpu-x86", options=FAST)
        job.wait(timeout=600)
        assert job.status == "succeeded", job.data
        return job.id


@pytest.mark.slow  # runs real jobs
def test_each_bound_answers_4xx_with_a_reason_and_memory_stays_flat(
    stack: Stack, keys: dict[str, str], digits_teacher_files: dict[str, Path], tmp_path: Path
) -> None:
    assert stack.api is not None
    h = _h(keys["a"])
    api = f"{stack.url}/api/v1"
    job_id = _finished_job(stack, keys["a"], digits_teacher_files)
    artifact = httpx.get(f"{api}/jobs/{job_id}/artifacts", headers=h, timeout=30).json()[0]
    rss_before = _rss_mib(stack.api.pid)

    # 4,000 multipart text fields, or 20 of 60 KB: refused as they arrive, never kept in memory.
    boundary = "bnd"
    for count, size, reason in ((4000, 1000, "parts"), (20, 60_000, "in all")):
        fields = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n'.encode() + b"v" * size + b"\r\n"
            for i in range(count)
        )
        for _ in range(5):
            r = httpx.post(
                f"{api}/datasets", content=fields + f"--{boundary}--\r\n".encode(),
                headers={**h, "Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=60,
            )  # fmt: skip
            assert r.status_code == 413 and reason in r.json()["detail"], r.text

    # A 300-byte npz declaring 2^61 x 8 float samples.
    tiny = _npz_declaring(tmp_path / "tiny.npz", (2**61, 8))
    r = httpx.post(f"{api}/datasets", files={"file": ("tiny.npz", tiny.read_bytes())}, headers=h, timeout=60)
    assert r.status_code == 422 and "over the" in r.json()["detail"], r.text

    # A Range header with 5,000 digits; event cursors past 2^63.
    r = httpx.get(f"{api}/artifacts/{artifact['id']}/download", headers={**h, "Range": f"bytes={'9' * 5000}-"})
    assert r.status_code == 416 and "outside" in r.json()["detail"]
    r = httpx.get(f"{api}/jobs/{job_id}/events", headers={**h, "Last-Event-ID": str(2**63)}, timeout=30)
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["detail"]
    r = httpx.get(f"{api}/jobs/{job_id}/events?after={2**64}", headers=h, timeout=30)
    assert r.status_code == 422

    # A dashboard upload sent chunked (no Content-Length), past the form's cap (2 x 8 MiB + 1 MiB here):
    # cut off while it streams.
    browser = _login(stack, keys["a"])
    token = browser.csrf("/ui/jobs/new")
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    sent = 0

    def chunked() -> Iterator[bytes]:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="teacher_file"; filename="t.onnx"\r\n\r\n'
        ).encode()
        for _ in range(256):  # 128 MiB
            sent += 512 * 1024
            yield b"x" * (512 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        r = httpx.post(
            f"{stack.url}/ui/jobs/new", content=chunked(),
            headers={"Cookie": cookie, "Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=120,
        )  # fmt: skip
        assert r.status_code == 413, r.text[:300]
    except httpx.HTTPError:
        pass  # the server may close the connection on the 413 while the client is still sending
    browser.close()
    staging = stack.data_dir / "tmp"
    assert not staging.exists() or not [p for p in staging.iterdir() if p.name.startswith("web-upload-")]

    # Non-finite device figures.
    r = httpx.post(
        f"{api}/artifacts/{artifact['id']}/measurements",
        content=b'{"source":"device","device_name":"x","runtime":"r","runtime_version":"1","threads":1,"count":1,'
        b'"p50_ms":1,"p90_ms":1,"p99_ms":1,"mean_ms":1,"max_abs_diff":Infinity}',
        headers={**h, "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 422 and "max_abs_diff" in r.text

    grown = _rss_mib(stack.api.pid) - rss_before
    assert grown < 60, f"the API grew by {grown:.0f} MiB"
