"""Keeping only what the sender wrote in a reply.

Removes quoted history (``>`` lines, attribution lines such as "Le … a écrit :" or
"On … wrote:", Outlook "De : / Envoyé : / À : / Objet :" blocks, "-----Original
Message-----" and Zimbra "----- Mail original -----" separators), signatures after
``-- ``, sign-off blocks, mobile and webmail footers and legal disclaimers. Answers
written inline between quoted lines of the request are kept, with the quoted heading
they answer, and a forwarded answer is unwrapped rather than cut.

The rules are plain regular expressions over lines, written for the clients the
programme's teams use (see ``tests/corpus/``); they know nothing of any workflow: the
caller passes ``is_heading`` so that quoted headings can be recognised.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .mime import MAX_TEXT
from .sections import normalize
from .signoff import tail_cut

MAX_TAIL_PASSES = 10  # sign-off, then footer, then signature…: a few passes at most


def _never(line: str) -> bool:
    return False


@dataclass(frozen=True)
class ReplyContext:
    """What the extractor may know besides the text."""

    sender_name: str = ""
    is_forward: bool = False
    is_heading: Callable[[str], bool] = field(default=_never)
    from_list: bool = False  # relayed by a mailing list, which may append its footer


_INVISIBLE_CHARS = "\u200b\u200c\u2060\ufeff\u00ad"
# Tabs stay: "Victoires<TAB>la convention…" (and a table cell) separates a heading.
_SPACE_CHARS = "\u00a0\u202f\u2007\u2009\u3000"

_LABELS = (
    r"from|de|von|sent|envoy[ée]|envoy[ée] par|date|to|[àa]|pour|cc|cci|bcc|copie [àa]"
    r"|subject|objet|sujet|reply-to|r[ée]pondre [àa]|importance|de la part de"
    r"|pi[èe]ces? jointes?|attachments?"
)
_HEADER_LINE = re.compile(rf"^\s*[*_]*(?P<label>{_LABELS})\s*[*_]*\s*:\s*[*_]*\s*\S", re.I)
_FROM_LABEL = re.compile(r"^(from|de|von|de la part de|envoy[ée] par)$", re.I)
# No end anchor: a format=flowed client may have joined the next line to the separator.
_SEPARATOR = re.compile(
    r"^\s*[-_=*]{2,}\s*(original message|message d'origine|mail original|message original"
    r"|courriel original|message initial|original)\s*[-_=*]{2,}",
    re.I,
)
_UNDERSCORES = re.compile(r"^\s*_{8,}\s*$")
_FORWARD = re.compile(
    r"^\s*[-_=*]*\s*(forwarded message|forwarded e-?mail|message transf[ée]r[ée]"
    r"|courriel transf[ée]r[ée]|begin forwarded message|d[ée]but du message r[ée]exp[ée]di[ée]"
    r"|message r[ée]exp[ée]di[ée])\s*:?\s*[-_=*]*\s*$",
    re.I,
)
_FORWARD_SUBJECT = re.compile(r"^\s*(fwd?|tr|transf|wg|rv|fw)\s*:", re.I)
_ATTRIBUTION_END = re.compile(
    r"(wrote|a [ée]crit|[ée]crit|schrieb|escribi[óo]|ha scritto)\s*:\s*$", re.I
)
_ATTRIBUTION_START = re.compile(r"^\s*(on|le|el|am|il|op)\s", re.I)
_DATED_FROM = re.compile(
    r"^\s*\d{1,2}\.?\s+\S+\.?\s+\d{4},?\s+\d{1,2}[:h.]\d{2}.{0,12}\b(de|by|from|von)\b.+@.+:\s*$",
    re.I,
)
_MESSAGE_OF = re.compile(r"^\s*message du \d{1,2}/\d{1,2}/\d{2,4} \d{1,2}:\d{2}\s*$", re.I)

_FOOTER = re.compile(
    r"^[-–—\s]*(envoy[ée]|sent|obtenir|t[ée]l[ée]charger|get|download|provenance|r[ée]dig[ée])\b"
    r".{0,80}\b(iphone|ipad|android|galaxy|samsung|smartphone|appareil|mobile|t[ée]l[ée]phone"
    r"|outlook|yahoo|proton\s?mail|k-?9|courrier pour windows|mail for windows|blackberry"
    r"|tuta\w*|gmail|fairemail|huawei|xiaomi|phone)\b.{0,80}$",
    re.I,
)
_BREVITY = re.compile(
    r"(veuillez |merci d')?excuse[rz]? (ma|la) bri[èe]vet[ée]|please excuse (my |the )?brevity",
    re.I,
)
_DISCLAIMER = re.compile(
    r"(ce (message|courriel|mail|e-?mail)( electronique)?( et (toutes )?(les|ses) pieces jointes)?"
    r".{0,80}(confidenti|destine|intention exclusive|exclusivement)"
    r"|(les )?informations? contenues? dans ce (message|courriel|mail)"
    r"|(this|the) (e-?mail|message|communication)( and any (files|attachments)[^.]{0,40})?"
    r".{0,80}(confidential|intended (solely|only|exclusively)|privileged)"
    r"|^(confidentiality|legal) (notice|disclaimer)|^disclaimer\b|^avertissement\b"
    r"|^avis de confidentialite|^clause de confidentialite"
    r"|(pensez|merci de penser|songez) a l'environnement|n'imprimez ce"
    r"|(please )?(consider|think about) the environment before printing)",
    re.I,
)
# Cheap first test before the full disclaimer patterns: the stems every one contains.
_DISCLAIMER_HINT = re.compile(
    r"confidenti|destin|intend|environ|imprim|disclaimer|avertissement|contenue|privileg|exclusi",
    re.I,
)
_SIG_DASH = re.compile(r"^\s*--\s*$")
_RULE = re.compile(r"^\s*(?:[-_=*~]{3,}|--)\s*$")
# What Sympa's and Mailman's footers say (their default wording and the usual custom ones).
_LIST_FOOTER = re.compile(
    r"mailing list|liste de diffusion|unsubscribe|d[ée]sabonn|d[ée]sinscri|listinfo|/sympa/"
    r"|/mailman/|-leave@|-request@|vous recevez ce (?:message|mail|courriel)"
    r"|you (?:are receiving|received) this|abonn[ée]\(?e?\)?s? [àa] la liste|subscribed to",
    re.I,
)
_QUOTE_PREFIX = re.compile(r"^\s*(>\s?)+")


def _clean(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        # str.replace per character present: translate() with a table is ten times slower.
        for ch in _INVISIBLE_CHARS:
            if ch in text:
                text = text.replace(ch, "")
        for ch in _SPACE_CHARS:
            if ch in text:
                text = text.replace(ch, " ")
    return [line.rstrip() for line in text.split("\n")]


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _unquote(line: str) -> str:
    return _QUOTE_PREFIX.sub("", line)


class _Lines(list[str]):
    """Lines that know, for each, where the next non-empty one is (computed once, so that
    looking ahead never makes a long message quadratic)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines)
        self.following: list[int | None] = [None] * (len(lines) + 1)
        for i in range(len(lines) - 1, -1, -1):
            self.following[i] = i if lines[i].strip() else self.following[i + 1]


def _next_nonempty(lines: list[str], start: int) -> int | None:
    if isinstance(lines, _Lines):
        return lines.following[start] if start < len(lines) else None
    for i in range(start, len(lines)):
        if lines[i].strip():
            return i
    return None


def _header_block_at(lines: list[str], i: int) -> bool:
    """An Outlook-style block: a From line and at least two more header lines below it."""
    m = _HEADER_LINE.match(lines[i])
    if not m or not _FROM_LABEL.match(m.group("label").strip()):
        return False
    labels = {m.group("label").lower()}
    for line in lines[i + 1 : i + 8]:
        hit = _HEADER_LINE.match(line)
        if hit:
            labels.add(hit.group("label").lower())
    return len(labels) >= 3


def _header_block_end(lines: list[str], i: int) -> int:
    """The index just after a header block starting at ``i`` (its first blank line)."""
    j = i
    while j < len(lines) and lines[j].strip():
        j += 1
    return j


def _attribution_at(lines: list[str], i: int) -> int:
    """How many lines (0, 1 or 2) form an attribution line starting at ``i``."""
    line = lines[i].strip()
    if not line or len(line) > 300 or _quoted(line):
        return 0
    # Every form has a colon: at its end, or ("Message du 27/11/26 09:00") in its time.
    if ":" not in line and not (i + 1 < len(lines) and lines[i + 1].rstrip().endswith(":")):
        return 0
    if _DATED_FROM.match(line) or _MESSAGE_OF.match(line):
        return 1
    candidates = [(line, 1)]
    if i + 1 < len(lines) and lines[i + 1].strip() and not _quoted(lines[i + 1]):
        candidates.append((line + " " + lines[i + 1].strip(), 2))
    for candidate, size in candidates:
        if not _ATTRIBUTION_END.search(candidate):
            continue
        plausible = (
            re.search(r"\d|@", candidate)
            or _ATTRIBUTION_START.match(candidate)
            or _quoted_follows(lines, i + size)
        )
        if plausible and (size == 1 or _ATTRIBUTION_START.match(line) or re.search(r"\d", line)):
            return size
    return 0


def _quoted_follows(lines: list[str], start: int) -> bool:
    j = _next_nonempty(lines, start)
    return j is not None and _quoted(lines[j])


def _unwrap_forward(lines: list[str], ctx: ReplyContext) -> list[str]:
    """Replace a forward marker and its header lines by nothing, keeping the forwarded text."""
    for i, line in enumerate(lines):
        if _FORWARD.match(line):
            start = _next_nonempty(lines, i + 1)
            if start is not None and _HEADER_LINE.match(lines[start]):
                return lines[:i] + lines[_header_block_end(lines, start) :]
            return lines[:i] + lines[i + 1 :]
        if ctx.is_forward and _header_block_at(lines, i):
            start = i - 1 if i and _UNDERSCORES.match(lines[i - 1]) else i
            return lines[:start] + lines[_header_block_end(lines, i) :]
    return lines


def _history_start(lines: list[str]) -> tuple[int, list[int]]:
    """Where unquoted history begins, and the attribution lines to drop above it."""
    lines = _Lines(lines)
    drop: list[int] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _quoted(line):
            i += 1
            continue
        if _SEPARATOR.match(line) or _header_block_at(lines, i):
            return i, drop
        if _UNDERSCORES.match(line):
            j = _next_nonempty(lines, i + 1)
            if j is not None and _header_block_at(lines, j):
                return i, drop
        size = _attribution_at(lines, i)
        if size:
            if not _quoted_follows(lines, i + size):
                return i, drop
            drop.extend(range(i, i + size))
            i += size
            continue
        i += 1
    return len(lines), drop


def _drop_quotes(lines: list[str], ctx: ReplyContext) -> list[str]:
    """Remove quoted lines, keeping a quoted heading when an inline answer follows it."""
    lines = _Lines(lines)
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _quoted(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and (
            _quoted(lines[j]) or (not lines[j].strip() and _quoted_follows(lines, j))
        ):
            j += 1
        run = [_unquote(line) for line in lines[i:j] if _unquote(line).strip()]
        k = _next_nonempty(lines, j)
        answer = lines[k] if k is not None else ""
        if answer and not ctx.is_heading(answer) and not _is_tail_line(answer):
            heading = next((line for line in reversed(run[-2:]) if ctx.is_heading(line)), None)
            if heading:
                out.append(heading.strip())
        i = j
    return out


def _is_tail_line(line: str) -> bool:
    return bool(_SIG_DASH.match(line) or _FOOTER.match(line.strip()) or _BREVITY.search(line))


def _fold(line: str) -> str:
    """Lower case without accents: what the disclaimer patterns are written against."""
    return normalize(line) if not line.isascii() else line.lower()


def _drop_tail(lines: list[str], ctx: ReplyContext) -> list[str]:
    """Signatures, sign-offs, footers and disclaimers at the end of the sender's text."""
    for _ in range(MAX_TAIL_PASSES):
        end = len(lines)
        while end and (not lines[end - 1].strip() or _is_footer(lines[end - 1])):
            end -= 1
        cut = _tail_cut(lines[:end], ctx)
        lines = lines[: end if cut is None else cut]
        if cut is None:
            break
    return lines


def _is_footer(line: str) -> bool:
    return bool(_FOOTER.match(line.strip()) or _BREVITY.search(line))


def _list_footer(lines: list[str], last_heading: int) -> int | None:
    """Where the footer a list appended starts: its last paragraph saying how to leave it."""
    end = len(lines)
    start = end
    while start > 0 and lines[start - 1].strip() and not _RULE.match(lines[start - 1]):
        start -= 1
    block = lines[start:end]
    if start <= last_heading or not block or len(block) > 6:
        return None
    if not any(_LIST_FOOTER.search(line) for line in block):
        return None
    while start > 0 and (_RULE.match(lines[start - 1]) or not lines[start - 1].strip()):
        start -= 1
    return start


def _tail_cut(lines: list[str], ctx: ReplyContext) -> int | None:
    last_heading = max((i for i, line in enumerate(lines) if ctx.is_heading(line)), default=-1)

    def no_heading_after(i: int) -> bool:
        return i >= last_heading

    if ctx.from_list:
        cut = _list_footer(lines, last_heading)
        if cut is not None:
            return cut
    for i, line in enumerate(lines):
        if _SIG_DASH.match(line) and no_heading_after(i):
            return i
    for i in range(max(0, len(lines) - 60), len(lines)):
        line = lines[i]
        if (
            _DISCLAIMER_HINT.search(line)
            and _DISCLAIMER.search(_fold(line))
            and no_heading_after(i)
        ):
            above = i - 1
            while above >= 0 and re.fullmatch(r"\s*[-_=*~#]*\s*", lines[above]):
                above -= 1
            return above + 1
    return tail_cut(lines, ctx.is_heading, ctx.sender_name, last_heading)


def extract_reply(text: str, ctx: ReplyContext | None = None) -> str:
    """The text the sender wrote in this message, without history, signature or footers."""
    ctx = ctx or ReplyContext()
    lines = _clean(text[:MAX_TEXT])
    lines = _unwrap_forward(lines, ctx)
    end, attribution = _history_start(lines)
    dropped = set(attribution)
    lines = [line for i, line in enumerate(lines[:end]) if i not in dropped]
    lines = _drop_quotes(lines, ctx)
    lines = _drop_tail(lines, ctx)
    result = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", result)


def looks_forwarded(subject: str) -> bool:
    return bool(_FORWARD_SUBJECT.match(subject))
