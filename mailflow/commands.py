"""Commands by mail: the subject names what to do, ``key: value`` lines say how.

The vocabulary (keywords, key names and value words, in French and English) is data,
in ``templates/commands.toml``. This module reads a command out of a message and checks
its arguments; ``alias`` decides whether to obey it and does it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from .sections import normalize
from .tomltable import Table

_SUBJECT_PREFIX = re.compile(r"^\s*(\[?mailflow\]?\s*:?\s*)", re.I)
_KEY_LINE = re.compile(r"^\s*[-*•]?\s*([^:：]{1,40}?)\s*[:：]\s*(.*)$")
_DATE_DMY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")
_TIME = re.compile(r"^(\d{1,2})\s*(?:[h:]\s*(\d{2})?)?$", re.I)
MULTILINE = ("agenda", "text")


class CommandError(Exception):
    """A command's arguments are wrong; ``code`` and ``data`` let the reply template say how."""

    def __init__(self, code: str, **data: str) -> None:
        super().__init__(f"{code}: {data}")
        self.code = code
        self.data = data


@dataclass(frozen=True)
class Vocabulary:
    verbs: dict[str, tuple[str, ...]]
    keys: dict[str, tuple[str, ...]]
    values: dict[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        root = Table.from_file(path)
        tables = []
        for name in ("verbs", "keys", "values"):
            table = root.table(name, required=True)
            tables.append({k: tuple(normalize(w) for w in table.strings(k)) for k in table.data})
            table.done()
        root.done()
        return cls(*tables)

    def value(self, word: str, choices: tuple[str, ...]) -> str | None:
        """The canonical value among ``choices`` that ``word`` names, if any."""
        word = normalize(word)
        for choice in choices:
            if word == choice or word in self.values.get(choice, ()):
                return choice
        return None


@dataclass
class Command:
    verb: str
    arguments: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def get(self, key: str, default: str = "") -> str:
        return self.arguments.get(key, default).strip()

    def require(self, key: str) -> str:
        value = self.get(key)
        if not value:
            raise CommandError("missing_key", key=key)
        return value


def parse_command(subject: str, text: str, vocabulary: Vocabulary) -> Command | None:
    """The command a message carries, None when its subject names none."""
    head = normalize(_SUBJECT_PREFIX.sub("", subject))
    best: tuple[int, str] | None = None
    for verb, words in vocabulary.verbs.items():
        for word in words:
            matches = head == word or re.match(re.escape(word) + r"(\s|:|-|$)", head)
            if matches and (best is None or len(word) > best[0]):
                best = (len(word), verb)
    if best is None:
        return None
    command = Command(best[1])
    _arguments(command, text, vocabulary)
    return command


def _arguments(command: Command, text: str, vocabulary: Vocabulary) -> None:
    by_word = {w: key for key, words in vocabulary.keys.items() for w in words}
    current: str | None = None
    free: list[str] = []
    for line in text.splitlines():
        found = _KEY_LINE.match(line)
        key = by_word.get(normalize(found.group(1))) if found else None
        if found and key:
            current = key
            command.arguments[key] = found.group(2).strip()
        elif current in MULTILINE and line.strip():
            # A multi-line value (an agenda) runs until a blank line.
            command.arguments[current] = command.arguments[current] + "\n" + line
        else:
            current = None
            free.append(line)
    command.text = "\n".join(free).strip()


def parse_date(value: str, key: str) -> dt.date:
    value = value.strip()
    found = _DATE_DMY.match(value)
    try:
        if found:
            return dt.date(int(found.group(3)), int(found.group(2)), int(found.group(1)))
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError("bad_date", key=key, value=value) from None


def parse_hour(value: str, key: str) -> dt.time:
    found = _TIME.match(value.strip())
    if found:
        hour, minute = int(found.group(1)), int(found.group(2) or 0)
        if hour < 24 and minute < 60:
            return dt.time(hour, minute)
    raise CommandError("bad_time", key=key, value=value.strip())
