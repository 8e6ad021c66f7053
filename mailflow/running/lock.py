"""One mailflow process at a time per database: the daemon, or a tick or ingest by hand.

Two processes working on the same database could both deliver a mail or act on a
message; the lock makes the second one stop with a clear message instead.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from ..errors import LockError


class Lock:
    """An exclusive, advisory lock held for the process's life (released by the kernel on exit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[str] | None = None

    @classmethod
    def for_database(cls, database: Path) -> Lock:
        return cls(Path(f"{database}.lock"))

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise LockError(
                f"another mailflow daemon ({holder}) is running on this database: it ticks by "
                f"itself; stop it first to run this by hand (lock: {self.path})"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
