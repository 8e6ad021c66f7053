"""What time it is for the engine: the system clock, or a file that tests and rehearsals set.

``FileClock`` reads an ISO 8601 instant from a file each time it is asked, so a test (or
the staff rehearsing a week) can drive ``mailflow run --clock-file FILE`` through a
simulated Friday, kill it, restart it, and move time on, while everything else (mail
servers, the database, the daemon's loop) is real.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol

from ..errors import ConfigError


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def changed(self) -> bool:
        """True when time moved by other means than passing (a file clock was set)."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def changed(self) -> bool:
        return False


class FileClock:
    """The instant written in a file (``2026-11-27T09:00:00+01:00``, or ``2026-11-27 09:00``
    in the programme's time zone, as ``tick --at`` reads it)."""

    def __init__(self, path: Path, timezone: dt.tzinfo = dt.UTC) -> None:
        self.path = path
        self.timezone = timezone
        self._seen: float | None = None
        self.now()

    def now(self) -> dt.datetime:
        text = self.path.read_text().strip()
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                "--clock-file", "an ISO 8601 instant (2026-11-27T09:00, with or without offset)",
                text,
            ) from None  # fmt: skip
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.timezone)
        self._seen = self.path.stat().st_mtime
        return moment

    def changed(self) -> bool:
        try:
            return self.path.stat().st_mtime != self._seen
        except OSError:
            return False

    @staticmethod
    def set(path: Path, moment: dt.datetime) -> None:
        """Move a file clock (atomically, so the daemon never reads half an instant)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(moment.isoformat())
        tmp.replace(path)
