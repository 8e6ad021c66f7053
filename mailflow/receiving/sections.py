"""Splitting a reply into named sections by its headings.

The headings, their synonyms and the answers that mean "nothing" are configuration of a
workflow (``[collect]`` in its TOML file); this module only knows how people decorate a
heading: case, accents, bullets, numbering, markdown, bold markers, emoji, a trailing
colon, a parenthetical such as "(facultatif)", and content on the same line.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

from ..tomltable import KEY, Table

_PARENTHETICAL = re.compile(r"\s*[(\[][^)\]]*[)\]]\s*")
_NUMBERING = re.compile(r"^(?:\(?\d{1,2}\s*[.)\-]|\(?[ivx]{1,4}[.)]|\(?[a-h][.)])\s+", re.I)
_COLON = re.compile(r"[ \t]*[:：]\s*|[ ]*\t+\s*")  # a colon, or a tab as in a table
_MARKUP = "#*_~`>+-–—•‣◦▪▫►▶→⇒➜➤·|=\"'“”«»"
_PUNCTUATION = re.compile(r"[\s.!?:;,/*_•\-–—]+")
_MAX_HEADING_WORDS = 7


@functools.lru_cache(maxsize=8192)  # the same lines (a quoted request) come back often
def normalize(text: str) -> str:
    """Lower case, no accents, typographic apostrophes made plain, spaces collapsed."""
    if text.isascii():
        return " ".join(text.lower().split())
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("’", "'").replace("‘", "'").lower()
    return " ".join(text.split())


def _is_decoration(ch: str) -> bool:
    if ch.isspace() or ch in _MARKUP or ch in "\ufe0f\u200d\u20e3":
        return True
    category = unicodedata.category(ch)
    return category in ("So", "Sk", "Cs", "Co") or "\U0001f000" <= ch <= "\U0001faff"


def _is_emoji(ch: str) -> bool:
    return "\U0001f000" <= ch <= "\U0001faff" or unicodedata.category(ch) == "So"


def _strip_decorations(text: str, *, trailing: bool = True) -> str:
    """Remove bullets, numbering, markdown and emoji before (and after) a heading."""
    previous = None
    while previous != text:
        previous = text
        i = 0
        while i < len(text) and _is_decoration(text[i]):
            i += 1
        text = _NUMBERING.sub("", text[i:])
    if not trailing:
        return text
    j = len(text)
    while j > 0 and _is_decoration(text[j - 1]):
        j -= 1
    return text[:j]


@dataclass(frozen=True)
class Heading:
    """One section or field: its key in the output and the headings that introduce it."""

    key: str
    names: tuple[str, ...]
    kind: str = "section"  # "section" (multi-line answer) or "field" (optional, short)

    @property
    def normalized(self) -> tuple[str, ...]:
        return tuple(normalize(_PARENTHETICAL.sub(" ", n)).strip(" :") for n in self.names)


@dataclass(frozen=True)
class HeadingMatch:
    key: str
    rest: str


@dataclass(frozen=True)
class SectionSpec:
    """The headings a workflow collects, and the answers that count as empty."""

    headings: tuple[Heading, ...]
    empty_answers: tuple[str, ...] = ()
    _index: dict[str, str] = field(init=False, repr=False, compare=False)
    _empty: frozenset[str] = field(init=False, repr=False, compare=False)
    _cache: dict[str, HeadingMatch | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, str] = {}
        for heading in self.headings:
            for name in heading.normalized:
                index.setdefault(name, heading.key)
        object.__setattr__(self, "_index", index)
        empty = frozenset(normalize(_PUNCTUATION.sub(" ", a)).strip() for a in self.empty_answers)
        object.__setattr__(self, "_empty", empty)
        object.__setattr__(self, "_cache", {})

    @property
    def section_keys(self) -> tuple[str, ...]:
        return tuple(h.key for h in self.headings if h.kind == "section")

    @property
    def field_keys(self) -> tuple[str, ...]:
        return tuple(h.key for h in self.headings if h.kind == "field")

    def match(self, line: str) -> HeadingMatch | None:
        """The section a line opens, with what follows the heading on the same line."""
        stripped = line.strip()
        if not stripped or len(stripped) > 160:
            return None
        # The same lines are asked about several times while a reply is cut and split.
        if stripped in self._cache:
            return self._cache[stripped]
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[stripped] = found = self._match(stripped)
        return found

    def _match(self, stripped: str) -> HeadingMatch | None:
        body = _strip_decorations(stripped, trailing=False)
        parts = _COLON.split(body, maxsplit=1)
        has_colon = len(parts) == 2
        head = _strip_decorations(_PARENTHETICAL.sub(" ", parts[0]))
        key = self._lookup(normalize(head), has_colon)
        if key is None:
            return self._match_emoji(body) if not has_colon else None
        # Only markdown emphasis closing the heading is dropped: the answer keeps its emoji.
        rest = parts[1].strip().strip("*_").strip() if has_colon else ""
        return HeadingMatch(key, rest)

    def _match_emoji(self, body: str) -> HeadingMatch | None:
        """ "Victoires 🎉 la convention est signée": an emoji after a heading ends it."""
        i = next((k for k, ch in enumerate(body) if k and _is_emoji(ch)), None)
        if i is None:
            return None
        key = self._index.get(normalize(_strip_decorations(body[:i])))
        rest = _strip_decorations(body[i:], trailing=False).strip()
        return HeadingMatch(key, rest) if key is not None else None

    def is_heading(self, line: str) -> bool:
        return self.match(line) is not None

    def _lookup(self, head: str, has_colon: bool) -> str | None:
        if head in self._index:
            return self._index[head]
        # "Nos victoires de la semaine :" — a known heading followed by a few words, but
        # only before a colon: without one, such a line is a sentence, not a heading.
        if has_colon and len(head.split()) <= _MAX_HEADING_WORDS:
            for name in sorted(self._index, key=len, reverse=True):
                if head.startswith(name + " "):
                    return self._index[name]
        return None

    def is_empty_answer(self, content: str) -> bool:
        if len(content) > 40:  # no "nothing to report" answer is that long
            return False
        cleaned = normalize(_PUNCTUATION.sub(" ", content)).strip()
        return not cleaned or cleaned in self._empty

    def split(self, text: str) -> dict[str, str | None]:
        """Every configured key mapped to its content, None when absent or empty."""
        collected: dict[str, list[str]] = {h.key: [] for h in self.headings}
        current: str | None = None
        for line in text.split("\n"):
            hit = self.match(line)
            if hit is not None:
                current = hit.key
                if collected[current]:
                    collected[current].append("")
                if hit.rest:
                    collected[current].append(hit.rest)
                continue
            if current is not None:
                collected[current].append(line.rstrip())
        return {key: self._content(lines) for key, lines in collected.items()}

    def _content(self, lines: list[str]) -> str | None:
        content = "\n".join(lines).strip("\n")
        content = re.sub(r"\n{3,}", "\n\n", content).strip()
        return None if self.is_empty_answer(content) else content


def spec_from_table(collect: Table) -> SectionSpec:
    """Read a workflow's ``[collect]`` table: ``[[collect.sections]]``, ``[[collect.fields]]``
    (each a ``key`` and its ``headings``) and ``empty_answers``."""
    headings = []
    keys: set[str] = set()
    for kind, name in (("section", "sections"), ("field", "fields")):
        for t in collect.tables(name, label=f"collect.{kind}"):
            key = t.string("key", pattern=KEY)
            t.identify(key)
            if key in keys:
                t.fail("key", "a key not used by another section or field", key)
            keys.add(key)
            names = t.strings("headings")
            if not names:
                t.fail("headings", "at least one heading")
            t.done()
            headings.append(Heading(key, names, kind))
    return SectionSpec(tuple(headings), collect.strings("empty_answers", ()))
