"""Whether the server is shutting down, so the dashboard's long-lived event streams end at once.

uvicorn waits for open responses before it stops, and an open jobs page keeps one open. uvicorn
installs its Server.handle_exit as the SIGINT/SIGTERM handler and sets should_exit when a signal
arrives; reading that flag (duck-typed: any other server simply reads as "not exiting") lets a
stream end within one poll instead of holding up Ctrl-C or a rolling deploy."""

from __future__ import annotations

import signal


def server_exiting() -> bool:
    try:
        handler = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):  # pragma: no cover - platforms without SIGTERM
        return False
    server = getattr(handler, "__self__", None)
    return bool(getattr(server, "should_exit", False))
