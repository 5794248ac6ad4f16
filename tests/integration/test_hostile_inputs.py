"""Hostile and malformed input against a real uvicorn and a real Celery worker (SQLite).

API level: pickles, unsafe/bomb/truncated archives, garbage and bad .npz files are refused (415/422) and
never stored; oversized bodies get 413 without being read; wrong content types, odd names and
out-of-range numbers in every job option are 4xx, never 5xx. Worker level: files the API lets through
(their problem only shows when loaded) and hostile files forced straight into the store and database
make the job FAIL with a readable reason; nothing is executed, the worker keeps running jobs.
The file-level checks themselves are unit-tested in tests/unit/workers/test_formats.py and
tests/unit/workers/steps/test_teacher.py; this module does not repeat them."""

from __future__ import annotations

import hashlib
import io
import json
import math
import socket
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hostile
import httpx
import numpy as np
import pytest
from pydantic import BaseModel
from stack import Stack, running_stack, wait_until

from edgedistill.client import Client
from edgedistill.contracts.spec import JobOptions
from edgedistill.service.db.session import make_engine, make_sessionmaker
from edgedistill.service.repos import datasets as datasets_repo
from edgedistill.service.repos import models as models_repo
from edgedistill.service.repos import tenants as tenants_repo
from edgedistill.service.storage import LocalStore

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

MAX_UPLOAD = 16 * 1024 * 1024
TINY = {"epochs": 1, "patience": 1, "benchmark_runs": 1, "benchmark_warmup": 0, "calibration_samples": 8}
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Hostile:
    stack: Stack
    key: str
    client: Client
    teacher: Path
    model_id: str
    dataset_id: str
    markers: Path  # where the pickles would create their files

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post_file(self, route: str, data: bytes, filename: str = "upload.bin", **fields: str) -> httpx.Response:
        files = {"file": (filename, data, "application/octet-stream")}
        return self.client.http.post(route, files=files, data=fields)

    def api_rss_bytes(self) -> int:
        assert self.stack.api is not None
        status = Path(f"/proc/{self.stack.api.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024

    def store_objects(self) -> set[str]:
        return {p.name for p in (self.stack.data_dir / "artifacts" / "objects").rglob("*") if p.is_file()}

    def staging_leftovers(self) -> list[Path]:
        return list((self.stack.data_dir / "tmp").glob("*"))

    # Forcing a file past the API, as if the upload checks had a hole: straight into store and database.
    def _tenant_session(self) -> Any:
        return make_sessionmaker(make_engine(self.stack.database_url))()

    def force_model(self, data: bytes, fmt: str) -> str:
        obj = LocalStore(self.stack.data_dir / "artifacts").put_stream(io.BytesIO(data))
        with self._tenant_session() as s:
            tenant = tenants_repo.get_tenant_by_name(s, name="hostile")
            row = models_repo.create_model(
                s, tenant_id=tenant.id, name="forced", filename="forced.bin", format=fmt, size_bytes=obj.size,
                sha256=obj.sha256, storage_key=obj.key,
            )  # fmt: skip
            s.commit()
            return str(row.id)

    def force_dataset(self, data: bytes) -> str:
        obj = LocalStore(self.stack.data_dir / "artifacts").put_stream(io.BytesIO(data))
        summary = {"keys": ["x"], "num_samples": 2, "has_labels": False, "x_shape": [1, 8, 8], "x_dtype": "float32"}
        with self._tenant_session() as s:
            tenant = tenants_repo.get_tenant_by_name(s, name="hostile")
            row = datasets_repo.create_dataset(
                s, tenant_id=tenant.id, name="forced", filename="forced.npz", size_bytes=obj.size,
                sha256=obj.sha256, storage_key=obj.key, summary=summary,
            )  # fmt: skip
            s.commit()
            return str(row.id)

    def run_job(self, model_id: str, dataset_id: str | None = None, timeout: float = 180) -> dict[str, Any]:
        body = {"model_id": model_id, "dataset_id": dataset_id or self.dataset_id, "device_profile": "cpu-x86"}
        r = self.client.http.post("/jobs", json={**body, "options": TINY})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]

        def ended() -> dict[str, Any] | None:
            job: dict[str, Any] = self.client.request("GET", f"/jobs/{job_id}")
            return job if job["status"] in TERMINAL else None

        result: dict[str, Any] = wait_until(ended, timeout, f"job {job_id} to end", interval=0.3)
        return result


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory, teacher_and_data: tuple[Path, Path]) -> Iterator[Hostile]:
    tmp = tmp_path_factory.mktemp("hostile")
    env = {"EDGEDISTILL_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)}
    with running_stack(tmp, f"sqlite:///{tmp / 'edgedistill.db'}", env=env) as stack:
        key = stack.create_key("hostile")
        teacher, data = teacher_and_data
        with Client(stack.url, key) as client:
            model, dataset = client.upload_model(teacher), client.upload_dataset(data)
            markers = tmp / "markers"
            markers.mkdir()
            yield Hostile(stack, key, client, teacher, model["id"], dataset["id"], markers)


def _assert_json_error(r: httpx.Response, status: int, fragment: str = "") -> None:
    assert r.status_code == status, (r.status_code, r.text[:500])
    detail = r.json()["detail"]
    assert fragment.lower() in json.dumps(detail).lower(), detail


# ---------------------------------------------------------------------------------------------------
# uploads the API refuses
# ---------------------------------------------------------------------------------------------------

MODEL_REFUSALS: list[tuple[str, Callable[[Path], bytes], str]] = [
    ("raw-pickle", hostile.raw_pickle, "raw Python pickle"),
    ("torch-save-zip", hostile.torch_save_zip, "torch.save() checkpoint"),
    ("traversal-zip", lambda _m: hostile.traversal_zip("../../evil.txt"), "unsafe member path"),
    ("absolute-member-zip", lambda _m: hostile.traversal_zip("/tmp/evil.txt"), "unsafe member path"),
    ("zip-bomb", lambda _m: hostile.zip_bomb(), "zip bomb"),
    ("truncated-zip", lambda _m: hostile.truncated(hostile.zip_bomb(1)), "truncated or corrupt"),
    ("random-bytes", lambda _m: hostile.random_bytes(), "not a recognised model"),
    ("empty", lambda _m: b"", "empty"),
]


@pytest.mark.parametrize(("case", "make", "reason"), MODEL_REFUSALS, ids=[c[0] for c in MODEL_REFUSALS])
def test_hostile_model_uploads_are_refused_and_never_stored(
    h: Hostile, case: str, make: Callable[[Path], bytes], reason: str
) -> None:
    marker = h.markers / f"upload-{case}"
    objects = h.store_objects()
    r = h.post_file("/models", make(marker), filename=f"{case}.pt")
    _assert_json_error(r, 415, reason)
    assert not marker.exists(), "the pickle ran"
    assert h.store_objects() == objects and h.staging_leftovers() == []
    assert [m["id"] for m in h.client.request("GET", "/models")["items"]] == [h.model_id]


NPZ_REFUSALS: list[tuple[str, Callable[[Path], bytes], str]] = [
    ("object-dtype", hostile.npz_object_dtype, "dtype object"),
    (
        "mismatched-shapes",
        lambda _m: hostile.npz(x=np.zeros((5, 1, 8, 8), np.float32), y=np.arange(4)),
        "y has shape (4,) but x has 5 rows",
    ),
    ("zero-rows", lambda _m: hostile.npz(x=np.zeros((0, 1, 8, 8), np.float32)), "zero rows"),
    ("billions-declared", lambda _m: hostile.npz_declared((10**10, 1, 8, 8)), "declares shape"),
    ("no-x", lambda _m: hostile.npz(y=np.arange(3)), "no input arrays"),
    ("not-a-zip", lambda _m: hostile.random_bytes(), "not an .npz"),
]


@pytest.mark.parametrize(("case", "make", "reason"), NPZ_REFUSALS, ids=[c[0] for c in NPZ_REFUSALS])
def test_bad_npz_uploads_are_422_and_never_stored(
    h: Hostile, case: str, make: Callable[[Path], bytes], reason: str
) -> None:
    marker = h.markers / f"npz-{case}"
    objects = h.store_objects()
    r = h.post_file("/datasets", make(marker), filename=f"{case}.npz")
    _assert_json_error(r, 422, reason)
    assert not marker.exists()
    assert h.store_objects() == objects and h.staging_leftovers() == []


# ---------------------------------------------------------------------------------------------------
# what only the worker can tell: the job fails with a readable reason
# ---------------------------------------------------------------------------------------------------


def _digits_onnx(h: Hostile) -> bytes:
    return h.teacher.read_bytes()


# ONNX files whose signature the API reads at upload: external data a one-file upload cannot carry
# (422) and protobuf that does not parse (415) are refused there; forced into the store, the worker
# still refuses them by itself.
ONNX_REFUSED_AT_UPLOAD: list[tuple[str, Callable[[Hostile], bytes], int, str, str]] = [
    ("onnx-external-parent", lambda h: hostile.onnx_external_data(_digits_onnx(h), "../../secret.bin"), 422,
     "external data", "outside"),
    ("onnx-external-absolute", lambda h: hostile.onnx_external_data(_digits_onnx(h), "/etc/passwd"), 422,
     "external data", "outside"),
    ("onnx-external-missing", lambda h: hostile.onnx_external_data(_digits_onnx(h), "weights.bin"), 422,
     "external data", "missing"),
    ("protobuf-garbage", lambda _h: hostile.protobuf_garbage(), 415, "not a valid ONNX model",
     "not a valid ONNX model"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "make", "status", "reason", "worker_reason"),
    ONNX_REFUSED_AT_UPLOAD,
    ids=[c[0] for c in ONNX_REFUSED_AT_UPLOAD],
)
def test_onnx_the_signature_reader_refuses_is_never_stored_and_fails_when_forced(
    h: Hostile, case: str, make: Callable[[Hostile], bytes], status: int, reason: str, worker_reason: str
) -> None:
    objects = h.store_objects()
    r = h.post_file("/models", make(h), filename=f"{case}.onnx")
    _assert_json_error(r, status, reason)
    assert h.store_objects() == objects and h.staging_leftovers() == []
    job = h.run_job(h.force_model(make(h), "onnx"))
    assert job["status"] == "failed" and worker_reason in job["error"], job["error"]
    assert "root:" not in job["error"]  # nothing of /etc/passwd is read back into the reason


ACCEPTED_THEN_FAILED: list[tuple[str, Callable[[Hostile], bytes], str]] = [
    ("onnx-huge-initializer", lambda _h: hostile.onnx_huge_initializer(), "cannot load the teacher"),
]


@pytest.mark.parametrize(("case", "make", "reason"), ACCEPTED_THEN_FAILED, ids=[c[0] for c in ACCEPTED_THEN_FAILED])
def test_models_only_a_loader_can_refuse_fail_their_job_with_the_reason(
    h: Hostile, case: str, make: Callable[[Hostile], bytes], reason: str
) -> None:
    r = h.post_file("/models", make(h), filename=f"{case}.onnx")
    assert r.status_code == 201, r.text  # a well-formed ONNX envelope: the API cannot know more
    job = h.run_job(r.json()["id"])
    assert job["status"] == "failed" and reason in job["error"], job["error"]
    assert "root:" not in job["error"]  # nothing of /etc/passwd is read back into the reason
    assert h.client.request("GET", f"/jobs/{job['id']}/artifacts") == []


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_transfer_data_fails_the_job_with_the_reason(h: Hostile, bad: float) -> None:
    x = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    x[3, 0, 2, 2] = bad
    r = h.post_file("/datasets", hostile.npz(x=x, y=np.arange(40) % 10), filename="bad.npz")
    assert r.status_code == 201, r.text  # headers are fine; values are checked where the data is loaded
    job = h.run_job(h.model_id, r.json()["id"])
    assert job["status"] == "failed" and "NaN or Inf" in job["error"], job["error"]


FORCED_MODELS: list[tuple[str, Callable[[Path], bytes], str, str]] = [
    ("raw-pickle", hostile.raw_pickle, "torchscript", "raw Python pickle"),
    ("torch-save-zip", hostile.torch_save_zip, "pt2", "torch.save() checkpoint"),
    ("traversal-zip", lambda _m: hostile.traversal_zip(), "torchscript", "unsafe member path"),
    ("zip-bomb", lambda _m: hostile.zip_bomb(), "torchscript", "zip bomb"),
    ("truncated-zip", lambda _m: hostile.truncated(hostile.zip_bomb(1)), "torchscript", "truncated or corrupt"),
    ("random-bytes-as-onnx", lambda _m: hostile.random_bytes(), "onnx", "not a recognised model"),
]


@pytest.mark.parametrize(("case", "make", "fmt", "reason"), FORCED_MODELS, ids=[c[0] for c in FORCED_MODELS])
def test_hostile_model_forced_into_the_store_fails_in_the_worker_without_running(
    h: Hostile, case: str, make: Callable[[Path], bytes], fmt: str, reason: str
) -> None:
    """The worker sniffs every file again before a loader sees it: the database's format is not trusted."""
    marker = h.markers / f"forced-{case}"
    job = h.run_job(h.force_model(make(marker), fmt))
    assert job["status"] == "failed" and reason in job["error"], job["error"]
    assert not marker.exists(), "the pickle ran in the worker"


@pytest.mark.parametrize(
    ("case", "make", "reason"),
    [
        ("object-dtype", hostile.npz_object_dtype, "dtype object"),
        ("billions-declared", lambda _m: hostile.npz_declared((10**10, 1, 8, 8)), "declares shape"),
    ],
)
def test_hostile_npz_forced_into_the_store_fails_in_the_worker(
    h: Hostile, case: str, make: Callable[[Path], bytes], reason: str
) -> None:
    marker = h.markers / f"forced-npz-{case}"
    job = h.run_job(h.model_id, h.force_dataset(make(marker)))
    assert job["status"] == "failed" and reason in job["error"], job["error"]
    assert not marker.exists()


def test_the_worker_survived_every_hostile_job(h: Hostile) -> None:
    assert all(w.poll() is None for w in h.stack.workers)
    job = h.run_job(h.model_id)
    assert job["status"] == "succeeded", job["error"]


# ---------------------------------------------------------------------------------------------------
# sizes, content types, names
# ---------------------------------------------------------------------------------------------------


def _raw_request(h: Hostile, head: str, timeout: float = 10) -> bytes:
    """Send only the request head (no body) over a plain socket; return what the server answers."""
    with socket.create_connection(("127.0.0.1", h.stack.port), timeout=timeout) as s:
        s.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _content_length(answer):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def _content_length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_declared_oversized_upload_is_413_before_any_body_is_sent(h: Hostile) -> None:
    rss = h.api_rss_bytes()
    for route in ("models", "datasets"):
        head = (
            f"POST /api/v1/{route} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {h.key}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {50 * 1024**3}\r\n\r\n"
        )
        answer = _raw_request(h, head)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"byte limit" in answer
    head = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {50 * 1024**3}\r\n\r\n"
    )  # no key at all: still refused on size before anything is read
    assert _raw_request(h, head).startswith(b"HTTP/1.1 413")
    assert h.api_rss_bytes() - rss < 20 * 1024**2


def test_streamed_oversized_upload_stops_at_the_limit_and_memory_stays_flat(h: Hostile) -> None:
    rss = h.api_rss_bytes()
    sent = 0

    def body() -> Iterator[bytes]:  # chunked, no Content-Length: the limit is found while reading
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.onnx"\r\n\r\n'
        for _ in range(6 * MAX_UPLOAD // (1 << 20)):
            sent += 1 << 20
            yield b"\x01" * (1 << 20)
        yield b"\r\n--b--\r\n"

    try:
        r = httpx.post(
            f"{h.stack.url}/api/v1/models",
            content=body(),
            headers={**h.headers, "Content-Type": "multipart/form-data; boundary=b"},
            timeout=60,
        )
        _assert_json_error(r, 413, "upload limit")
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the server answered 413 and closed while the client was still sending: also a refusal
    growth = h.api_rss_bytes() - rss
    print(f"sent {sent >> 20} MiB against a {MAX_UPLOAD >> 20} MiB limit; API RSS grew {growth >> 20} MiB")
    assert growth < 40 * 1024**2
    assert h.staging_leftovers() == [] and len(h.client.request("GET", "/models")["items"]) >= 1


def test_oversized_json_body_is_413(h: Hostile) -> None:
    big = {"model_id": h.model_id, "device_profile": "cpu-x86", "webhook_url": "http://x/" + "a" * 2_000_000}
    _assert_json_error(h.client.http.post("/jobs", json=big), 413, "byte limit")


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b'{"file": "AAAA"}', 415),
        ("text/plain", b"hello", 415),
        ("application/x-www-form-urlencoded", b"file=abc", 415),
        ("multipart/form-data", b"--b\r\n\r\n", 400),  # no boundary parameter
        ("multipart/form-data; boundary=b", b"--b\r\nno headers, no end", 422),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n',
            422,
        ),
    ],
)
def test_wrong_content_types_and_broken_multipart_are_4xx(
    h: Hostile, content_type: str, body: bytes, status: int
) -> None:
    for route in ("/models", "/datasets"):
        r = h.client.http.post(route, content=body, headers={"Content-Type": content_type})
        assert r.status_code in {status, 400}, (route, r.status_code, r.text)
        assert "detail" in r.json()
    r = h.client.http.post("/jobs", content=b"model_id=x", headers={"Content-Type": "text/plain"})
    assert 400 <= r.status_code < 500, r.text


@pytest.mark.parametrize(
    "filename",
    [
        "../../../etc/passwd",
        "..\\..\\windows\\system32\\x.onnx",
        "modèle-\u202egnp.onnx",  # right-to-left override
        "\U0001f4a3" * 300 + ".onnx",
        "a" * 10_000,
        "nul\x00byte.onnx",
        ".hidden",
    ],
    ids=["traversal", "backslashes", "rtl", "emoji-long", "10k-chars", "nul", "dotfile"],
)
def test_odd_file_names_are_stored_sanitised(h: Hostile, filename: str) -> None:
    import onnx

    # Distinct bytes per case: uploads are deduplicated by sha256, and this test deletes what it uploads.
    teacher = onnx.load_from_string(h.teacher.read_bytes())
    teacher.doc_string = f"odd file name case {filename!r}"
    r = h.post_file("/models", teacher.SerializeToString(), filename=filename, name=filename)
    if len(filename) > 4096:  # a part header this long is refused by the multipart parser itself
        _assert_json_error(r, 400, "header size")
        return
    assert r.status_code == 201, r.text
    model = r.json()
    assert "/" not in model["filename"] and "\\" not in model["filename"] and "\x00" not in model["filename"]
    assert not model["filename"].startswith(".") and 0 < len(model["filename"]) <= 255
    assert len(model["name"]) <= 255
    assert h.client.request("GET", f"/models/{model['id']}")["filename"] == model["filename"]
    h.client.http.delete(f"/models/{model['id']}")


def test_oversized_form_field_is_413(h: Hostile) -> None:
    r = h.post_file("/models", h.teacher.read_bytes(), filename="t.onnx", name="n" * 100_000)
    _assert_json_error(r, 413, "over")


# ---------------------------------------------------------------------------------------------------
# numbers in every option
# ---------------------------------------------------------------------------------------------------


def _numeric_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of every int/float option, nested option groups included."""
    found: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            annotation = next((a for a in args if a is not type(None)), annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _numeric_fields(annotation, (*prefix, name))
        elif annotation in (int, float):
            found.append((*prefix, name))
    return found


NUMERIC_OPTIONS = _numeric_fields(JobOptions)
HOSTILE_NUMBERS: list[Any] = [-1, -(10**30), 10**30, 2**63, math.nan, math.inf, -math.inf, 1e308]


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


def test_out_of_range_numbers_in_every_option_are_422_never_5xx(h: Hostile) -> None:
    assert len(NUMERIC_OPTIONS) >= 15, NUMERIC_OPTIONS
    accepted: list[tuple[tuple[str, ...], Any]] = []
    for path in NUMERIC_OPTIONS:
        for value in HOSTILE_NUMBERS:
            body = {"model_id": h.model_id, "device_profile": "cpu-x86", "options": _nest(path, value)}
            r = h.client.http.post("/jobs", content=json.dumps(body), headers={"Content-Type": "application/json"})
            assert r.status_code < 500, (path, value, r.status_code, r.text)
            if r.status_code == 202:
                h.client.http.post(f"/jobs/{r.json()['id']}/cancel")
                accepted.append((path, value))
                continue
            assert r.status_code == 422, (path, value, r.text)
            assert any(tuple(e["loc"][2:]) == path for e in r.json()["detail"]), (path, value, r.json())
    assert accepted == [], f"options accepted out-of-range values: {accepted}"


def test_list_losses_and_query_numbers_are_422(h: Hostile) -> None:
    base = {"model_id": h.model_id, "device_profile": "cpu-x86"}
    for options in (
        {"losses": [{"key": "kd", "weight": -1}]},
        {"losses": [{"key": "kd", "weight": 1e9}]},
        {"losses": [{"key": "kd"}] * 17},
        {"data_free": {"input_shape": [10**9]}},
        {"data_free": {"input_range": [1, -1]}},
        {"student": {"kernel": 4}},
    ):
        r = h.client.http.post("/jobs", json={**base, "options": options})
        assert r.status_code == 422, (options, r.text)
    for path in ("/jobs?limit=0", "/jobs?limit=-5", f"/jobs?limit={10**30}", "/models?limit=1e9", "/jobs?status=x"):
        assert h.client.http.get(path).status_code == 422, path
    r = h.client.http.get("/jobs?cursor=" + "%ff" * 50)
    assert r.status_code == 422 and "detail" in r.json()
    r = h.client.http.post("/jobs", json=base, headers={"Idempotency-Key": "k" * 300})
    assert r.status_code == 422


# ---------------------------------------------------------------------------------------------------
# custom device profiles with impossible budgets
# ---------------------------------------------------------------------------------------------------

PROFILE = {"name": "board", "class": "cpu", "targets": ["onnx_int8"], "int8_scheme": "qdq_per_channel"}
MCU = {"class": "mcu", "targets": ["tflite_int8_full"], "int8_scheme": "full_int8", "op_allowlist": ["CONV_2D"]}


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"budgets": {"max_model_bytes": 1}}, "no model fits"),
        ({"budgets": {"max_model_bytes": 10**6, "max_ram_bytes": 100}}, "no arena fits"),
        ({"budgets": {"max_model_bytes": 0}}, "greater than 0"),
        ({"budgets": {"max_model_bytes": 10**30}}, "less than or equal"),
        ({"budgets": {"max_model_bytes": 10**6, "max_macs": -1}}, "greater than 0"),
        ({"budgets": {"max_model_bytes": 10**6, "latency_target_ms": 0}}, "greater than 0"),
        ({"budgets": {"max_model_bytes": 10**6}, "threads": 10**6}, "less than or equal"),
        ({**MCU, "budgets": {"max_model_bytes": 2048, "max_ram_bytes": 8192}}, "no model fits"),
        ({**MCU, "budgets": {"max_model_bytes": 10**6}}, "needs budgets.max_ram_bytes"),
        ({"budgets": {"max_model_bytes": 10**6}, "name": "ünïcödé"}, "string should match pattern"),
    ],
)
def test_impossible_custom_profiles_are_a_clear_422(h: Hostile, changes: dict[str, Any], fragment: str) -> None:
    r = h.client.http.post("/device-profiles", json={**PROFILE, **changes})
    _assert_json_error(r, 422, fragment)


def test_uploaded_teacher_still_intact(h: Hostile) -> None:
    """After everything above, the tenant's real teacher is unchanged in the store."""
    model = h.client.request("GET", f"/models/{h.model_id}")
    assert model["sha256"] == hashlib.sha256(h.teacher.read_bytes()).hexdigest()
