"""Typed reading of TOML tables, with errors that name the file, the key and the expectation.

Every file mailflow loads (config, roster, workflows, planning) goes through ``Table``, so a
wrong value always reads the same way: ``workflows/retro.toml: step "reminder-1".at:
expected a time HH:MM, got '25:00'``. Unknown keys are errors too, with a suggestion,
because a typo in a key would otherwise silently fall back to a default; a missing key
says which unknown key may be its misspelling.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

_MISSING: Any = object()


@dataclass(frozen=True)
class Pattern:
    """A shape a string value must have, and how to say it to whoever wrote the file."""

    regex: str
    means: str


ID = Pattern(r"[a-z0-9][a-z0-9-]*", "lower-case letters (no accent), digits and dashes")
KEY = Pattern(r"[a-z][a-z0-9_]*", "lower-case letters (no accent), digits and underscores")
VARIABLE = Pattern(r"[A-Za-z_]\w*", "an environment variable name such as MAILFLOW_SECRET")
TEMPLATE = Pattern(r"[A-Za-z0-9_/-]+", "a template name such as retro/request")
LANGUAGE = Pattern(r"[a-z]{2}", "a two-letter language code that the templates have, such as fr")
ADDRESS = Pattern(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", "an email address such as name@example.org")

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "mb": 1024**2, "m": 1024**2, "gb": 1024**3}
_DURATION_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning syntax and I/O errors into ``ConfigError``."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(path), "an existing file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("(syntax)", f"valid TOML ({e})", source=str(path)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            "(encoding)", f"a file saved as UTF-8 ({e.reason})", source=str(path)
        ) from None
    except OSError as e:
        raise ConfigError(str(path), f"a readable file ({e.strerror})") from None


def parse_size(value: object) -> int | None:
    """``25MB``, ``500 KB`` or a number of bytes; None when it is neither."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    return None


def parse_duration(value: object) -> dt.timedelta | None:
    """``90s``, ``30m``, ``4h``, ``2d``, ``1w`` or combinations like ``1h30m``; None if invalid."""
    if not isinstance(value, str):
        return None
    parts = re.findall(r"(\d+)\s*(min|[smhdw])", value.strip().lower())
    rebuilt = "".join(n + u for n, u in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", value.strip().lower()):
        return None
    return dt.timedelta(seconds=sum(int(n) * _DURATION_UNITS[u] for n, u in parts))


def parse_time(value: object) -> dt.time | None:
    """``HH:MM`` (24-hour clock); None if invalid."""
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hour, minute = (int(x) for x in value.strip().split(":"))
        if hour < 24 and minute < 60:
            return dt.time(hour, minute)
    return None


class Table:
    """A TOML table read key by key; ``done()`` rejects the keys nobody asked for."""

    def __init__(self, data: dict[str, Any], prefix: str = "", source: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.source = source
        self._seen: set[str] = set()

    @classmethod
    def from_file(cls, path: Path) -> Table:
        return cls(load_toml(path), source=str(path))

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, expected: str, got: object = None) -> NoReturn:
        raise ConfigError(self.path(key), expected, got, self.source)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if default is _MISSING:
                self.fail(key, "a value (the key is missing" + self._misspelt(key) + ")")
            return default
        return self.data[key]

    def _misspelt(self, key: str) -> str:
        """'; is 'hots' a misspelling of it?' when an unread key is close to a missing one."""
        unread = [k for k in self.data if k not in self._seen]
        close = difflib.get_close_matches(key, unread, n=1, cutoff=0.6)
        return f"; is {close[0]!r} a misspelling of it?" if close else ""

    def string(
        self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] = (),
        pattern: Pattern | None = None, empty: bool = False,
    ) -> Any:  # fmt: skip
        """A string; with ``pattern``, of that shape (or "" when ``empty``)."""
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            self.fail(key, "a string", value)
        if choices and value not in choices:
            self.fail(key, "one of " + ", ".join(repr(c) for c in choices), value)
        if pattern and not (empty and value == "") and not re.fullmatch(pattern.regex, value):
            self.fail(key, pattern.means, value)
        return value

    def integer(self, key: str, default: Any = _MISSING, *, min: int = 0, max: int = 2**62) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or not min <= value <= max:
            self.fail(key, f"an integer between {min} and {max}", value)
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self.fail(key, "true or false", value)
        return value

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "a list of strings", value)
        return tuple(value)

    def size(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        size = parse_size(value)
        if size is None:
            self.fail(key, "a size such as 25MB or a number of bytes", value)
        return size

    def duration(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        duration = parse_duration(value)
        if duration is None:
            self.fail(key, "a duration such as 90s, 30m, 4h or 2d", value)
        return duration

    def time(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        parsed = parse_time(value)
        if parsed is None:
            self.fail(key, "a time HH:MM", value)
        return parsed

    def date(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        self.fail(key, "a date YYYY-MM-DD", value)

    def timezone(self, key: str, default: Any = _MISSING) -> Any:
        name = self.string(key, default)
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.fail(key, "an IANA time zone such as Europe/Paris", name)

    def table(self, key: str, *, required: bool = False) -> Table:
        value = self.raw(key, _MISSING if required else {})
        if not isinstance(value, dict):
            self.fail(key, "a table", value)
        return Table(value, self.path(key), self.source)

    def tables(self, key: str, *, required: bool = False, label: str = "") -> Iterator[Table]:
        """An array of tables (``[[key]]``), each named for errors by its position from 1
        (``step 2``) until ``identify`` names it by its id (``step "reminder-1"``)."""
        value = self.raw(key, _MISSING if required else [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, "an array of tables ([[" + key + "]])", value)
        name = self.path(label or key)
        for i, item in enumerate(value, 1):
            yield Table(item, f"{name} {i}", self.source)

    def identify(self, value: str) -> None:
        """Name this table by its id in later errors: ``step 2`` becomes ``step "reminder-1"``."""
        self.prefix = f'{self.prefix.rsplit(" ", 1)[0]} "{value}"'

    def done(self) -> None:
        """Reject keys that were never read: they are typos or unsupported options."""
        for key in self.data:
            if key not in self._seen:
                close = difflib.get_close_matches(key, list(self._seen), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(self.path(key), f"a known key{hint}", source=self.source)
