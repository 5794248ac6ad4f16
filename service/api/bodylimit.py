"""Cap on API request bodies other than uploads: 413 before an oversized JSON body is read into memory.

FastAPI reads a JSON body whole before it checks anything (the API key included), so without a cap one
unauthenticated request could make the API hold gigabytes. The cap is checked against Content-Length up
front and counted while a chunked body arrives. The upload routes (upload_paths) are exempt: they stream
their multipart body to disk under max_upload_bytes (service/api/uploads.py)."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class JsonBodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        path_prefix: str,
        upload_paths: frozenset[str],
        check_declared: bool = True,
    ) -> None:
        """check_declared=False: only count the bytes as they arrive (the route answers a declared
        Content-Length itself, e.g. with an HTML page)."""
        self.app = app
        self.check_declared = check_declared
        self.max_bytes = max_bytes
        self.path_prefix = path_prefix
        self.upload_paths = upload_paths

    def _detail(self) -> str:
        return f"request body is over the {self.max_bytes} byte limit"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", "")) if scope["type"] == "http" else ""
        if not path.startswith(self.path_prefix) or path.rstrip("/") in self.upload_paths:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if (
            self.check_declared
            and declared is not None
            and declared.strip().isdigit()
            and int(declared) > self.max_bytes
        ):
            await JSONResponse({"detail": self._detail()}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises an HTTPException met while reading the body: a JSON 413.
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited, send)
