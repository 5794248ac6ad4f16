"""receive_upload straight from an ASGI receive channel: the limit stops reading mid-stream."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import HTTPException, Request

from edgedistill.service.api.uploads import receive_upload

BOUNDARY = "bNd"


def _request(chunks: list[bytes], pulled: list[int]) -> Request:
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        pulled.append(1)
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())],
    }
    return Request(scope, receive)


def _body(payload_chunks: list[bytes], name: str = "n") -> list[bytes]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n\r\n'
    ).encode()
    return [head, *payload_chunks, f"\r\n--{BOUNDARY}--\r\n".encode()]


def test_file_is_written_hashed_and_fields_kept(tmp_path: Path) -> None:
    data = [bytes([i]) * 7000 for i in range(10)]
    pulled: list[int] = []

    async def go() -> None:
        up = await receive_upload(
            _request(_body(data, name="teach"), pulled), max_bytes=10**6, tmp_dir=tmp_path, chunk_bytes=4096
        )
        whole = b"".join(data)
        assert up.path.read_bytes() == whole and up.size == len(whole)
        assert up.sha256 == hashlib.sha256(whole).hexdigest()
        assert up.filename == "m.onnx" and up.fields == {"name": "teach"}
        up.cleanup()

    anyio.run(go)
    assert list(tmp_path.iterdir()) == []


def test_limit_stops_reading_and_removes_the_partial_file(tmp_path: Path) -> None:
    data = [b"\1" * 1000 for _ in range(100)]
    pulled: list[int] = []

    async def go() -> None:
        with pytest.raises(HTTPException) as info:
            await receive_upload(_request(_body(data), pulled), max_bytes=5000, tmp_dir=tmp_path, chunk_bytes=4096)
        assert info.value.status_code == 413

    anyio.run(go)
    assert len(pulled) < 10  # stopped right after the limit, not at the end of the body
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("parts", "size", "words"), [(4000, 10, "more than"), (20, 60_000, "in all")])
def test_text_fields_are_capped_in_number_and_total(tmp_path: Path, parts: int, size: int, words: str) -> None:
    """4,000 small fields (or many big ones) would all be kept in memory: refused with 413 instead."""
    fields = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n'.encode() + b"v" * size + b"\r\n"
        for i in range(parts)
    )
    body = [fields, *_body([b"\1" * 100])]

    async def go() -> None:
        with pytest.raises(HTTPException) as info:
            await receive_upload(_request(body, []), max_bytes=10**6, tmp_dir=tmp_path, chunk_bytes=4096)
        assert info.value.status_code == 413 and words in str(info.value.detail)

    anyio.run(go)
    assert list(tmp_path.iterdir()) == []
