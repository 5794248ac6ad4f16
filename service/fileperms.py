"""Files at rest are the owner's only: 0600 files, 0700 folders, whatever the process umask is.

`serve` and the worker also set umask 077 (restrict_umask) so files made by libraries (Redis, SQLite's
journal, temp files) follow; the helpers below give the service's own files their mode at creation,
never by a chmod afterwards (a window in which another user could open them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700


def restrict_umask() -> int:
    """Set umask 077 for this process (and the children it starts); returns the previous one."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """Create path (and missing parents) as 0700; an existing folder keeps its mode."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask; the folder is still empty
    return path


def open_private(path: Path) -> BinaryIO:
    """Open path for writing (created or truncated) with mode 0600 from its creation."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    return os.fdopen(fd, "wb")


def touch_private(path: Path) -> None:
    """Create path empty as 0600 unless it exists (SQLite then gives its WAL and shm files this mode too)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
