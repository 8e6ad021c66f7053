"""Raw messages read within bounds: the standard library's parser, fed only what it can handle.

``email``'s parser keeps every line of a part in memory, recurses once per MIME level,
checks every line against every open boundary and parses header parameters in quadratic
time: fed a crafted or merely large message it takes minutes and hundreds of megabytes.
``read_message`` caps every header value as the parser stores it (``CappedMessage``),
parses ordinary messages as they are, and first reduces large, deep or header-heavy ones
(``_Reducer``) to what mailflow reads: every header block, the beginning of the text
parts, none of the attachments' bodies, at most ``MAX_DEPTH`` levels and ``MAX_PARTS``
parts. A bare CR or LF inside the top-level header no longer ends it.
"""

from __future__ import annotations

import email.feedparser
import email.message
import re
from email.feedparser import BytesFeedParser
from email.parser import BytesHeaderParser
from typing import Any

MAX_FIELD = 8_000  # characters kept of one header field
MAX_PARAM_FIELD = 2_000  # of a field with parameters: the stdlib parses those in O(n²)
MAX_FIELDS = 1_000  # fields kept per header block, then only those mailflow reads
MAX_DEPTH = 50  # MIME levels read; deeper parts are left out
MAX_PARTS = 500
LARGE = 1024 * 1024  # messages above this are reduced before they are parsed
MAX_HEADER = 256 * 1024  # bytes of the top-level header read line by line
PART_HEADER = 8 * 1024  # bytes kept of a part's header block (64 KB for an attached message)
TEXT_BUDGET = 2 * 1024 * 1024  # bytes of text bodies kept, all parts together
REPORT_BUDGET = 64 * 1024  # bytes kept of a delivery report or a preamble
_CHUNK = 1024 * 1024

# Every header field mailflow reads (parse, automatic, mime): kept past MAX_FIELDS.
READ = frozenset({
    "from", "sender", "to", "cc", "reply-to", "subject", "date", "message-id",
    "in-reply-to", "references", "delivered-to", "x-original-to", "envelope-to",
    "authentication-results", "auto-submitted", "precedence", "x-autoreply",
    "x-autorespond", "x-autoresponder", "return-path", "x-failed-recipients",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
})  # fmt: skip
_PARAMETERS = frozenset({"content-type", "content-disposition"})
CALENDARS = frozenset({"text/calendar", "application/ics"})
_TNEF = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_ADDRESSES = frozenset({
    "from", "sender", "to", "cc", "bcc", "reply-to", "delivered-to", "x-original-to",
    "envelope-to", "return-path",
})  # fmt: skip

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
# What the parser takes for a header line (its headerRE): a field, a fold or "From ".
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
_BLOCK_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?!From |[\x21-\x39\x3b-\x7e]*:|[\t ])")
_READ_FIELD = re.compile(
    rb"(?:\r\n|\r|\n)(?:" + b"|".join(n.encode() for n in sorted(READ)) + rb")[ \t]*:", re.I
)
_FIELD_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?![ \t])")
_DELIMITER_TAIL = re.compile(rb"(--)?[ \t]*(?:\r\n|\r|\n|\Z)")
_CLOSE_TAIL = re.compile(rb"[ \t]*(?:\r\n|\r|\n|\Z)")
_BARE_CR = re.compile(rb"\r(?!\n)")
_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_NESTING_HINTS = (b"oundary", b"OUNDARY", b"essage/", b"ESSAGE/")


_BOUNDARY_HEAD = "(?P<sep>"
_BOUNDARY_TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_UNESCAPE = re.compile(r"\\(.)", re.S)


class _BoundaryMatch:
    __slots__ = ("groups_",)

    def __init__(self, groups: dict[str, str | None]) -> None:
        self.groups_ = groups

    def group(self, name: str) -> str | None:
        return self.groups_[name]


class _Boundary:
    """The pattern the standard parser compiles for each multipart's boundary, matched
    with string operations: compiling it costs more than the rest of parsing a reply
    (about 0.2 ms), and every message has its own boundary."""

    __slots__ = ("separator",)

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> _BoundaryMatch | None:
        if not line.startswith(self.separator):
            return None
        rest = line[len(self.separator) :]
        end = "--" if rest.startswith("--") else None
        if end:
            rest = rest[2:]
        trimmed = rest.lstrip(" \t")
        # "$" also matches before a last "\n": one line end, then perhaps that one.
        linesep = trimmed[:-1] if trimmed in ("\r\n\n", "\n\n") else trimmed
        if linesep not in ("", "\r\n", "\r", "\n"):
            return None
        return _BoundaryMatch({
            "sep": self.separator, "end": end, "ws": rest[: len(rest) - len(trimmed)],
            "linesep": linesep or None,
        })  # fmt: skip


class _FeedparserRe:
    """What ``email.feedparser`` sees as the ``re`` module: the same, except that its
    boundary pattern is a ``_Boundary`` (any other pattern is compiled as usual)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    def compile(self, pattern: Any, flags: int = 0) -> Any:
        if (
            isinstance(pattern, str)
            and not flags
            and pattern.startswith(_BOUNDARY_HEAD)
            and pattern.endswith(_BOUNDARY_TAIL)
        ):
            escaped = pattern[len(_BOUNDARY_HEAD) : -len(_BOUNDARY_TAIL)]
            return _Boundary(_UNESCAPE.sub(r"\1", escaped))
        return re.compile(pattern, flags)


setattr(email.feedparser, "re", _FeedparserRe())  # noqa: B010 (its module global, on purpose)


def cut_field(name: str, value: str, limit: int) -> str:
    """A field's value within ``limit`` characters (``name`` in lower case).

    References keeps its end (the nearest message is last); address fields their start
    and end, whole addresses where commas allow (a long name comes before its address);
    other fields their start.
    """
    if len(value) <= limit:
        return value
    if name == "references":
        tail = value[-limit:]
        return tail[max(tail.find("<"), 0) :]
    if name in _ADDRESSES:
        head, tail = value[: limit // 2], value[-(limit // 2) :]
        last, first = head.rfind(","), tail.find(",")
        if last > 0 and first >= 0:
            return head[:last] + tail[first:]
        return head + " " + tail
    return value[:limit]


class CappedMessage(email.message.Message):
    """A message whose header fields are capped (``cut_field``) as the parser stores them.

    ``capped`` names the fields that were cut; ``ignored`` counts fields left out past
    ``MAX_FIELDS``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capped: list[str] = []
        self.ignored = 0

    def set_raw(self, name: str, value: Any) -> None:
        count = len(self._headers)  # type: ignore[attr-defined]
        if count >= MAX_FIELDS and (count >= 2 * MAX_FIELDS or name.lower() not in READ):
            self.ignored += 1
            return
        if isinstance(value, str) and len(value) > MAX_PARAM_FIELD:  # rare: the check first
            key = name.lower()
            limit = MAX_PARAM_FIELD if key in _PARAMETERS else MAX_FIELD
            if len(value) > limit:
                self.capped.append(key)
                value = cut_field(key, value, limit)
        super().set_raw(name, value)


def is_attachment(part: email.message.Message) -> bool:
    """A part the reader sees as an attachment, not as the text of the message."""
    disposition = str(part.get("Content-Disposition", "")).split(";", 1)[0].strip().lower()
    return disposition == "attachment" or (
        bool(part.get_filename()) and part.get_content_maintype() != "text"
    )


def is_tnef(part: email.message.Message) -> bool:
    """Outlook's TNEF container (``winmail.dat``), whatever type a relay gave it."""
    if part.get_content_type() in _TNEF:
        return True
    return part.get_content_maintype() == "application" and (
        str(part.get_param("name", "") or "").lower() == "winmail.dat"
        or (part.get_filename() or "").lower() == "winmail.dat"
    )


def read_message(raw: bytes) -> tuple[CappedMessage, list[str]]:
    """Parse ``raw`` within bounds; the warnings say what was cut or left out."""
    warnings: list[str] = []
    raw, header_lines = _repaired(raw, warnings)
    ordinary = (
        len(raw) <= LARGE
        and header_lines <= MAX_FIELDS
        and sum(raw.count(h) for h in _NESTING_HINTS) <= 40  # boundaries, message/* parts
        and raw.count(b"\n--") <= 2 * MAX_PARTS
    )
    if ordinary:
        try:
            return _feed([raw]), warnings
        except Exception:  # RecursionError: nested deeper than the hints told
            pass  # read it reduced (what fails then is reported by the caller)
    return _feed(_Reducer(raw, warnings).run()), warnings


def _feed(chunks: list[bytes]) -> CappedMessage:
    parser = BytesFeedParser(_factory=CappedMessage)
    for chunk in chunks:
        if len(chunk) <= _CHUNK:
            parser.feed(chunk)
            continue
        view = memoryview(chunk)
        for start in range(0, len(chunk), _CHUNK):
            parser.feed(bytes(view[start : start + _CHUNK]))
    msg = parser.close()
    assert isinstance(msg, CappedMessage)
    return msg


def _repaired(raw: bytes, warnings: list[str]) -> tuple[bytes, int]:
    """The message with bare CRs or LFs of its header taken as the client meant them.

    In a header whose lines end in CRLF, a lone CR or LF (and in one whose lines end
    in LF, a lone CR) starts a new line only when a header field follows; otherwise it
    is a space, so that ``From: "Camille<CR>Martin" <c@x.test>`` keeps its address and
    the fields after it. Returns the bytes (the same object when nothing had to be
    done) and the number of header lines.
    """
    blank = _BLANK_LINE.search(raw)
    end = blank.start() if blank else len(raw)
    lf, cr, crlf = raw.count(b"\n", 0, end), raw.count(b"\r", 0, end), raw.count(b"\r\n", 0, end)
    if cr == 0 or lf == cr == crlf:
        return raw, lf
    dominant = b"\r\n" if 2 * crlf >= lf else b"\n"
    pattern = _BARE_CR_OR_LF if dominant == b"\r\n" else _BARE_CR
    head = raw[:end]
    if not pattern.search(head):
        return raw, lf

    def line_break(m: re.Match[bytes]) -> bytes:
        return dominant if _HEADER_LINE.match(head, m.end()) else b" "

    warnings.append("bare CR or LF in the header: read as the client meant it")
    return pattern.sub(line_break, head) + raw[end:], lf


class _Reducer:
    """A copy of a message with what mailflow reads of it: its structure, every header
    block (capped), the first ``TEXT_BUDGET`` bytes of text; bodies of other parts empty."""

    def __init__(self, raw: bytes, warnings: list[str]) -> None:
        self.raw = raw
        self.warnings = warnings
        self.out: list[bytes] = []
        self.text_left = TEXT_BUDGET
        self.parts = 0
        self.found: dict[bytes, int] = {}  # boundary: its next delimiter line found so far

    def run(self) -> list[bytes]:
        self._part(0, (), 0)
        return self.out

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    # -- parts ----------------------------------------------------------------------------
    def _part(self, pos: int, stack: tuple[bytes, ...], depth: int, digest: bool = False) -> int:
        """Copy the part at ``pos``; returns where it ends (a delimiter line, or the end).

        ``digest``: a part of a multipart/digest, a message unless it says otherwise.
        """
        limit = MAX_HEADER if depth == 0 else PART_HEADER
        header, body = self._header(pos, stack, limit)
        info = BytesHeaderParser(_class=CappedMessage).parsebytes(header)
        if digest:
            info.set_default_type("message/rfc822")
        maintype, ctype = info.get_content_maintype(), info.get_content_type()
        report = ctype == "message/delivery-status"
        nests = maintype == "multipart" or (maintype == "message" and not report)
        if nests and depth >= MAX_DEPTH:
            self._warn(f"MIME nesting deeper than {MAX_DEPTH} levels: ignored below")
            self.out.append(b"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
            return self._end(body, stack)
        self.out.append(header)
        boundary = info.get_boundary() if maintype == "multipart" else None
        if boundary is not None:
            inner = (*stack, boundary.encode("utf-8", "surrogateescape"))
            return self._multipart(body, inner, depth, ctype == "multipart/digest")
        if nests and maintype == "message":
            return self._nested(body, stack, depth)
        end = self._end(body, stack)
        if report or ctype in CALENDARS:  # read for what they say (a DSN, an iMIP reply)
            self._copy(body, end, REPORT_BUDGET)
        elif is_tnef(info):  # Outlook's container holds the names of the files, and text
            self._copy(body, end, TEXT_BUDGET)
        elif maintype in ("text", "multipart") and not is_attachment(info):
            self._copy_text(body, end)
        return end

    def _nested(self, pos: int, stack: tuple[bytes, ...], depth: int) -> int:
        self.parts += 1
        if self.parts > MAX_PARTS:
            return self._end(pos, stack)
        return self._part(pos, stack, depth + 1)

    def _multipart(self, pos: int, stack: tuple[bytes, ...], depth: int, digest: bool) -> int:
        """Preamble, parts and closing delimiter of the multipart whose boundary is stack[-1]."""
        own = len(stack) - 1
        at = self._end(pos, stack)
        owner, close, line_end = self._delimiter(at, stack)
        if owner == own:
            self._copy(pos, at, REPORT_BUDGET)  # a preamble, not read
        else:  # no delimiter: the parser takes the whole body for the text
            self._copy_text(pos, at)
        while owner == own:
            self.out.append(self.raw[at:line_end])
            if close:  # the epilogue is not read: on to the enclosing level's next line
                return self._end(line_end, stack[:-1])
            self.parts += 1
            if self.parts > MAX_PARTS:
                self._warn(f"more than {MAX_PARTS} MIME parts: the others ignored")
                return self._skip_parts(line_end, stack)
            at = self._part(line_end, stack, depth + 1, digest)
            owner, close, line_end = self._delimiter(at, stack)
        return at

    def _skip_parts(self, pos: int, stack: tuple[bytes, ...]) -> int:
        """Past the remaining parts of stack[-1], to its closing delimiter (copied)."""
        needle = b"--" + stack[-1] + b"--"
        close = self.raw.find(needle, pos)
        while close >= 0 and not (
            self.raw[close - 1] in b"\r\n" and _CLOSE_TAIL.match(self.raw, close + len(needle))
        ):
            close = self.raw.find(needle, close + 1)
        outer = self._end(pos, stack[:-1])
        if close < 0 or outer <= close:
            return outer
        tail = _CLOSE_TAIL.match(self.raw, close + len(needle))
        assert tail is not None
        self.out.append(self.raw[close : tail.end()])
        return self._end(tail.end(), stack[:-1])

    # -- bodies ---------------------------------------------------------------------------
    def _copy_text(self, pos: int, end: int) -> None:
        kept = self._copy(pos, end, self.text_left)
        self.text_left -= kept
        if kept < end - pos:
            self._warn(f"text longer than {TEXT_BUDGET // 1024 // 1024} MB: the rest not read")

    def _copy(self, pos: int, end: int, limit: int) -> int:
        """Copy raw[pos:end], or its first whole lines within ``limit`` bytes."""
        if end - pos <= limit:
            self.out.append(self.raw[pos:end])
            return end - pos
        if limit <= 0:
            return 0
        cut = self.raw.rfind(b"\n", pos, pos + limit) + 1
        if cut <= pos:
            self.out.append(self.raw[pos : pos + limit] + b"\r\n")
            return limit
        self.out.append(self.raw[pos:cut])
        return cut - pos

    # -- delimiters -----------------------------------------------------------------------
    def _end(self, pos: int, stack: tuple[bytes, ...]) -> int:
        """The first delimiter line of any open boundary at or after ``pos``."""
        return min((self._find(b, pos) for b in set(stack)), default=len(self.raw))

    def _find(self, boundary: bytes, pos: int) -> int:
        found = self.found.get(boundary)
        if found is not None and found >= pos:
            return found  # the scan only moves forward: still the next one
        needle = b"--" + boundary
        at = self.raw.find(needle, pos)
        while at >= 0 and not (
            (at == 0 or self.raw[at - 1] in b"\r\n")
            and _DELIMITER_TAIL.match(self.raw, at + len(needle))
        ):
            at = self.raw.find(needle, at + 1)
        self.found[boundary] = at = len(self.raw) if at < 0 else at
        return at

    def _delimiter(self, at: int, stack: tuple[bytes, ...]) -> tuple[int, bool, int]:
        """(level, closing, end of line) of the delimiter line at ``at``; level -1 at the end.

        A line matching several open boundaries belongs to the outermost, as for the
        standard parser (it checks enclosing boundaries before a part's own).
        """
        for level, boundary in enumerate(stack):
            needle = b"--" + boundary
            if self.raw.startswith(needle, at):
                tail = _DELIMITER_TAIL.match(self.raw, at + len(needle))
                if tail:
                    return level, tail.group(1) is not None, tail.end()
        return -1, False, len(self.raw)

    # -- headers --------------------------------------------------------------------------
    def _header(self, pos: int, stack: tuple[bytes, ...], limit: int) -> tuple[bytes, int]:
        """The header block at ``pos`` as the parser reads it, capped; and where its body starts."""
        raw, kept, fields, keep, name = self.raw, [], 0, True, ""
        i = pos
        while i < len(raw):
            if stack and raw.startswith(b"--", i) and self._delimiter(i, stack)[0] >= 0:
                break
            if not _HEADER_LINE.match(raw, i):
                blank = _LINE_END.match(raw, i)
                if blank:  # the empty line that ends the header belongs to it
                    kept.append(blank.group())
                    i = blank.end()
                break
            if i - pos >= limit:
                return self._rest_of_header(kept, i, limit)
            m = _LINE_END.search(raw, i)
            j = m.end() if m else len(raw)
            fold = raw[i] in b" \t"
            if not fold:
                fields += 1
                colon = raw.find(b":", i, min(j, i + 100))
                name = raw[i:colon].strip().lower().decode("latin-1") if colon > i else ""
                keep = fields <= MAX_FIELDS or name in READ
            if keep:
                kept.append(self._line(i, j, "" if fold else name))
            i = j
        return b"".join(kept), i

    def _rest_of_header(self, kept: list[bytes], i: int, limit: int) -> tuple[bytes, int]:
        """Past ``limit`` bytes of header: find its end, keep only the fields mailflow reads."""
        self._warn(f"header longer than {limit // 1024} KB: only the fields read are kept")
        raw = self.raw
        found = _BLOCK_END.search(raw, i)
        end = found.end() if found else len(raw)  # where the first line after the header starts
        for count, field in enumerate(_READ_FIELD.finditer(raw, i - 1, end)):
            if count >= MAX_FIELDS:
                break
            start = field.start() + (2 if raw.startswith(b"\r\n", field.start()) else 1)
            stop = _FIELD_END.search(raw, start, end)
            kept.append(self._line(start, stop.end() if stop else end, ""))
        blank = _LINE_END.match(raw, end)
        if blank:
            kept.append(blank.group())
        return b"".join(kept), blank.end() if blank else end

    def _line(self, start: int, end: int, name: str) -> bytes:
        """raw[start:end], a header line (``name``: its field's, "" for a fold) within
        ``MAX_FIELD`` bytes (cut as ``cut_field`` does) and ending in a line end."""
        if end - start <= MAX_FIELD:
            return self.raw[start:end]
        if name:
            self._warn(f"{name} header longer than {MAX_FIELD:,} bytes: cut")
        line = self.raw[start : start + MAX_FIELD]
        if name == "references" or name in _ADDRESSES:  # their end matters too
            tail = self.raw[max(end - MAX_FIELD, start + MAX_FIELD) : end].rstrip(b"\r\n")
            field, _, value = (line + tail).decode("latin-1").partition(":")  # byte for byte
            line = f"{field}:{cut_field(name, value, MAX_FIELD)}".encode("latin-1")
        return line + b"\r\n"
