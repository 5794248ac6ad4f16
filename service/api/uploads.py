"""Receive a multipart upload straight from the request stream into a staging file.

Starlette's form parsing would spool the whole body before the route runs; here the size limit is
enforced while the bytes arrive (413 as soon as it is passed), the file is hashed on the way, and
memory holds at most one chunk. Disk writes run in a worker thread, off the event loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from fastapi import HTTPException, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from edgedistill.service.fileperms import open_private, private_dir

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FIELD_LIMIT = 64 * 1024  # text fields (name) are tiny
# Text fields are kept in memory: their number and their total are capped too, not only each one.
MAX_PARTS = 32
FIELDS_TOTAL_LIMIT = 256 * 1024
BODY_OVERHEAD = 1024 * 1024  # multipart boundaries and headers on top of the file itself

# OpenAPI description of the body, since the route reads the stream itself.
MULTIPART_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string", "description": "Display name; default the file name"},
                    },
                }
            }
        },
    }
}


@dataclass
class ReceivedUpload:
    path: Path  # staging file named after the client's (sanitised) file name
    filename: str
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)

    def cleanup(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


MAX_FILENAME_BYTES = 255  # file systems count bytes: 255 characters of emoji are 1020


STALE_STAGING_S = 6 * 3600  # far longer than any upload or artifact write takes
# API uploads, dashboard uploads, store writes (local and S3 staging).
STAGING_PREFIXES = ("upload-", "web-upload-", "put-", "s3put-")


def sweep_stale_staging(folders: list[Path], *, older_than_s: float = STALE_STAGING_S) -> int:
    """Remove what a killed process left in staging folders: upload-* folders of uploads cut off by an
    API crash, put-* files of store writes cut off by a worker crash. Only entries untouched for
    older_than_s go, so another process's upload in progress is never removed. Returns the count."""
    cutoff = time.time() - older_than_s
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if not entry.name.startswith(STAGING_PREFIXES):
                continue
            try:
                is_dir = entry.is_dir() and not entry.is_symlink()
                # An upload in progress keeps writing its file: its folder's own mtime stays at the start.
                touched = [entry, *entry.iterdir()] if is_dir else [entry]
                if max(p.lstat().st_mtime for p in touched) >= cutoff:
                    continue
                if is_dir:
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
            except OSError:
                continue
    return removed


def safe_filename(raw: str, default: str = "upload.bin") -> str:
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip().lstrip(".")
    name = name.encode("utf-8", "ignore")[:MAX_FILENAME_BYTES].decode("utf-8", "ignore")  # whole characters
    return name or default


class _Receiver:
    """State for the parser callbacks; they only copy bytes into a buffer (no I/O in callbacks)."""

    def __init__(self, file_field: str, max_bytes: int) -> None:
        self.file_field = file_field
        self.max_bytes = max_bytes
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.part_name: str | None = None
        self.part_is_file = False
        self.field_value = bytearray()
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_seen = False
        self.pending = bytearray()
        self.file_size = 0
        self.error: HTTPException | None = None
        self.parts = 0
        self.fields_total = 0

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS and self.error is None:
            self.error = HTTPException(413, f"the multipart body has more than {MAX_PARTS} parts")
        self.headers = {}
        self.part_name, self.part_is_file = None, False
        self.field_value = bytearray()

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field, self.header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        self.part_name = name
        if name == self.file_field:
            if self.file_seen:
                self.error = HTTPException(400, f"only one '{self.file_field}' part is accepted")
            self.file_seen = True
            self.part_is_file = True
            self.filename = safe_filename(params.get(b"filename", b"").decode("utf-8", "replace"))
        elif b"filename" in params and self.error is None:
            # A file under another name (-F model=@x.onnx) would otherwise be read as an over-long text field.
            self.error = HTTPException(
                422,
                f"the file must be sent in the '{self.file_field}' field, not {name!r} "
                f"(curl -F {self.file_field}=@FILE)",
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        if self.part_is_file:
            self.file_size += end - start
            if self.file_size > self.max_bytes:
                self.error = HTTPException(413, f"file is larger than the {self.max_bytes} byte upload limit")
                return
            self.pending.extend(data[start:end])
        else:
            self.field_value.extend(data[start:end])
            self.fields_total += end - start
            if self.fields_total > FIELDS_TOTAL_LIMIT:
                self.error = HTTPException(413, f"the form's text fields are over {FIELDS_TOTAL_LIMIT} bytes in all")
            elif len(self.field_value) > FIELD_LIMIT:
                self.error = HTTPException(
                    413,
                    f"form field {self.part_name!r} is over {FIELD_LIMIT} bytes; "
                    f"the file itself goes in the '{self.file_field}' field",
                )

    def on_part_end(self) -> None:
        if self.error is None and not self.part_is_file and self.part_name:
            self.fields[self.part_name] = self.field_value.decode("utf-8", "replace")


def _write(f: BinaryIO, digest: Any, data: bytes) -> None:
    digest.update(data)
    f.write(data)


def _close(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())  # the store renames this file into place: it must be on disk first
    f.close()


async def receive_upload(
    request: Request, *, max_bytes: int, tmp_dir: Path, chunk_bytes: int, file_field: str = "file"
) -> ReceivedUpload:
    """Stream a multipart/form-data body's file part to tmp_dir. Raises HTTPException 400/411/413/415/422."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        raise HTTPException(
            415, f"send the file as multipart/form-data with a '{file_field}' field (curl -F {file_field}=@FILE)"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "multipart/form-data without a boundary")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "invalid Content-Length")
        if int(declared) > max_bytes + BODY_OVERHEAD:
            raise HTTPException(413, f"upload of {declared} bytes is over the {max_bytes} byte limit")

    private_dir(tmp_dir)
    folder = Path(tempfile.mkdtemp(dir=tmp_dir, prefix="upload-"))
    receiver = _Receiver(file_field, max_bytes)
    parser = MultipartParser(boundary, cast("MultipartCallbacks", receiver.callbacks()))
    digest = hashlib.sha256()
    out: BinaryIO | None = None
    body_bytes = 0
    try:
        async for chunk in request.stream():
            body_bytes += len(chunk)
            if body_bytes > max_bytes + BODY_OVERHEAD:
                raise HTTPException(413, f"upload is over the {max_bytes} byte limit")
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise HTTPException(400, f"malformed multipart body: {exc}") from exc
            if receiver.error is not None:
                raise receiver.error
            if len(receiver.pending) >= chunk_bytes:
                if out is None:
                    out = open_private(folder / (receiver.filename or "upload.bin"))
                data, receiver.pending = bytes(receiver.pending), bytearray()
                await run_in_threadpool(_write, out, digest, data)
        try:
            parser.finalize()
        except MultipartParseError as exc:
            raise HTTPException(400, f"malformed multipart body: {exc}") from exc
        if receiver.error is not None:
            raise receiver.error
        if not receiver.file_seen:
            raise HTTPException(422, f"missing the '{file_field}' part of the multipart body")
        if out is None:
            out = open_private(folder / (receiver.filename or "upload.bin"))
        data, receiver.pending = bytes(receiver.pending), bytearray()
        await run_in_threadpool(_write, out, digest, data)
        path = folder / (receiver.filename or "upload.bin")
        await run_in_threadpool(_close, out)
        out = None
        return ReceivedUpload(
            path=path,
            filename=receiver.filename or "upload.bin",
            size=receiver.file_size,
            sha256=digest.hexdigest(),
            fields=receiver.fields,
        )
    except BaseException:
        if out is not None:
            out.close()
        shutil.rmtree(folder, ignore_errors=True)  # nothing of a refused upload is kept
        raise
