"""Reading the shared mailbox into the store: every message once, raw bytes first, never lost.

Folders are synced by UID. One ``SEARCH LARGER`` finds the large messages; small ones are
fetched with ``BODY.PEEK[]`` (nothing is marked read) ``imap.batch_size`` at a time, large
ones one at a time after their size is read, so memory stays flat; a message over
``imap.max_message_size`` only has its header fetched (at most ``MAX_HEADER`` bytes) and
is quarantined, with a ``parsed`` record of what its header says and why it is
unreadable. After a UIDVALIDITY change, Message-IDs are read first and messages already
stored only gain a location. Each group is committed in one transaction together with
the folder's new last UID: a process killed at any point re-fetches at most the group it
was in, and stores nothing twice. Parsing comes after, from the stored bytes, and can be
re-run; each parse has ``PARSE_SECONDS`` (a message that cannot be read in time is
retried, then quarantined like one whose parse fails, with the record of its header).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType

from imapclient import IMAPClient

from ..config import ImapConfig
from ..store import mailbox
from ..store.db import Database, now_utc, transaction
from ..store.states import Parsing
from .bounded import MAX_HEADER
from .imap import session
from .parse import ParsedMessage, parse_header, parse_message
from .sections import SectionSpec

log = logging.getLogger(__name__)

POOL_THRESHOLD = 1000  # pending messages from which parsing is worth extra processes
MAX_PARSE_ATTEMPTS = 3
SMALL_MESSAGE = 64 * 1024  # below this, messages are fetched 500 at a time without sizing
PARSE_SECONDS = 10.0  # for one message; a bounded parse takes well under one
WINDOW_BYTES = 32 * 1024 * 1024  # of stored messages read at once for parsing
_HEADER_ITEM = f"BODY.PEEK[HEADER]<0.{MAX_HEADER}>"
_MSGID = re.compile(rb"<[^<>\s]+>")
_MESSAGE_ID_HEADER = re.compile(rb"(?i)message-id[ \t]*:((?:[^\r\n]|\r?\n[ \t])*)")
_SPACES = re.compile(rb"\s+")

Progress = Callable[[str, int, int], None]  # (folder, done, total)
Parser = Callable[[bytes, "SectionSpec | None"], ParsedMessage]


@dataclass
class FolderReport:
    """What one folder's sync did."""

    folder: str
    uidvalidity: int = 0
    resynced: bool = False
    seen: int = 0
    stored: int = 0
    duplicates: int = 0
    oversized: int = 0


@dataclass
class IngestReport:
    folders: list[FolderReport] = field(default_factory=list)
    parsed: int = 0
    retry: int = 0
    quarantined: int = 0

    @property
    def stored(self) -> int:
        return sum(f.stored for f in self.folders)


@dataclass
class _Fetched:
    uid: int
    size: int = 0
    message_id: str | None = None
    raw: bytes | None = None
    complete: bool = True
    known: bool = False  # already stored under this Message-ID: only a new location
    sha256: str = ""

    @property
    def key(self) -> str:
        return self.message_id or "sha256:" + self.sha256


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID in a message's header, read without parsing the message."""
    end = raw.find(b"\r\n\r\n")
    head = raw[: end if end >= 0 else len(raw)]
    lower = head.lower()
    # A plain search finds the header line; the pattern only reads it (the store phase
    # runs this on every message, at thousands a second).
    start = lower.find(b"message-id")
    while start > 0 and head[start - 1 : start] != b"\n":
        start = lower.find(b"message-id", start + 1)
    found = _MESSAGE_ID_HEADER.match(head, start) if start >= 0 else None
    if not found:
        return None
    value = _SPACES.sub(b" ", found.group(1))
    bracketed = _MSGID.search(value)
    cleaned = (bracketed.group(0) if bracketed else value.strip()).decode("ascii", "replace")
    return cleaned or None


def ingest(
    db: Database,
    cfg: ImapConfig,
    spec: SectionSpec | None = None,
    *,
    progress: Progress | None = None,
    client: IMAPClient | None = None,
) -> IngestReport:
    """Sync every configured folder, then parse what was stored; returns what was done."""
    report = IngestReport()
    if client is None:
        with session(cfg) as own:
            report.folders = [sync_folder(db, own, f, cfg, progress, spec) for f in cfg.folders]
    else:
        report.folders = [sync_folder(db, client, f, cfg, progress, spec) for f in cfg.folders]
    report.parsed, report.retry, report.quarantined = parse_pending(db, spec)
    return report


def sync_folder(
    db: Database,
    client: IMAPClient,
    folder: str,
    cfg: ImapConfig,
    progress: Progress | None = None,
    spec: SectionSpec | None = None,
) -> FolderReport:
    """Store every message of ``folder`` not stored yet; safe to interrupt at any point.

    ``spec``: the sections of the records made for messages too large to fetch.
    """
    info = client.select_folder(folder, readonly=True)
    uidvalidity = int(info[b"UIDVALIDITY"])
    report = FolderReport(folder, uidvalidity)
    last_uid = _folder_state(db, folder, uidvalidity, report)
    uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
    report.seen = len(uids)
    if not uids:
        return report
    # One cheap SEARCH says which messages are large; only those have their size fetched
    # before their body, and a message over the limit never has its body fetched.
    threshold = min(cfg.max_message_size, SMALL_MESSAGE)
    large = set(client.search(["UID", f"{uids[0]}:*", "LARGER", str(threshold)]))
    done = 0
    for batch in _chunks(uids, cfg.batch_size):
        items = [_Fetched(uid) for uid in batch]
        if report.resynced:
            _mark_known(db, client, items)
        _measure(client, [i for i in items if i.uid in large and not i.known], cfg)
        for group in _groups(items, large):
            _fetch(client, group)
            _store(db, folder, uidvalidity, group, report, cfg.max_message_size, spec)
        done += len(batch)
        if progress:
            progress(folder, done, len(uids))
    return report


def _folder_state(db: Database, folder: str, uidvalidity: int, report: FolderReport) -> int:
    row = mailbox.folder_state(db, folder)
    if row is not None and row[0] == uidvalidity:
        return row[1]
    if row is not None:
        # The server renumbered the folder: read it again from the start. Messages already
        # stored are recognised by Message-ID and only gain a new location.
        log.warning("%s: UIDVALIDITY changed %s -> %s, resyncing", folder, row[0], uidvalidity)
        report.resynced = True
    with transaction(db):
        mailbox.restart_folder(db, folder, uidvalidity, now_utc())
    return 0


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _mark_known(db: Database, client: IMAPClient, items: list[_Fetched]) -> None:
    """After a UIDVALIDITY change: skip the bodies of messages already stored."""
    fields = client.fetch([i.uid for i in items], ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    for item in items:
        data = fields.get(item.uid, {})
        header = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
        item.message_id = header_message_id(header or b"")
    known = mailbox.known_keys(db, sorted({i.message_id for i in items if i.message_id}))
    for item in items:
        item.known = item.message_id in known


def _measure(client: IMAPClient, items: list[_Fetched], cfg: ImapConfig) -> None:
    if not items:
        return
    sizes = client.fetch([i.uid for i in items], ["RFC822.SIZE"])
    for item in items:
        item.size = int(sizes.get(item.uid, {}).get(b"RFC822.SIZE", 0))
        item.complete = item.size <= cfg.max_message_size


def _groups(items: list[_Fetched], large: set[int]) -> Iterator[list[_Fetched]]:
    """Consecutive small messages together; each large one alone (memory stays bounded).

    Groups come in UID order, so that each commit can advance the folder's last UID.
    """
    group: list[_Fetched] = []
    for item in items:
        if item.uid in large and not item.known:
            if group:
                yield group
            yield [item]
            group = []
        else:
            group.append(item)
    if group:
        yield group


def _fetch(client: IMAPClient, group: list[_Fetched]) -> None:
    whole = [i.uid for i in group if i.complete and not i.known]
    partial = [i.uid for i in group if not i.complete and not i.known]
    bodies = client.fetch(whole, ["BODY.PEEK[]"]) if whole else {}
    headers = client.fetch(partial, [_HEADER_ITEM]) if partial else {}
    for item in group:
        if item.known:
            continue
        data = bodies.get(item.uid) if item.complete else headers.get(item.uid)
        if data is None:
            continue  # expunged between SEARCH and FETCH
        item.raw = data.get(b"BODY[]") if item.complete else data.get(b"BODY[HEADER]<0>")
        if item.raw is not None:
            item.size = item.size or len(item.raw)
            item.message_id = header_message_id(item.raw)
            item.sha256 = hashlib.sha256(item.raw).hexdigest()


def _store(
    db: Database,
    folder: str,
    uidvalidity: int,
    group: list[_Fetched],
    report: FolderReport,
    limit: int,
    spec: SectionSpec | None,
) -> None:
    """Insert a group's messages and locations and advance the folder, all or nothing.

    A message over ``limit`` (only its header fetched) gets its ``parsed`` record in the
    same transaction, with the sections of ``spec``.
    """
    stored_at = now_utc()
    fetched = [i for i in group if i.raw is not None and not i.known]
    located = [i for i in group if i.raw is not None or i.known]
    with transaction(db):
        inserted = mailbox.store_messages(db, [
            (
                i.key, i.message_id, i.sha256, i.size, i.raw or b"", int(i.complete), stored_at,
                Parsing.NEW if i.complete else Parsing.QUARANTINED,
                None if i.complete else _oversize_error(i.size),
            )
            for i in fetched
        ])  # fmt: skip
        mailbox.add_locations(db, folder, uidvalidity, [(i.uid, i.key) for i in located])
        mailbox.advance_folder(db, folder, group[-1].uid, stored_at)
        for item in fetched:
            if not item.complete:
                _record_header_only(db, item, limit, spec)
    report.stored += inserted
    report.duplicates += len(located) - inserted
    if len(group) == 1 and not group[0].complete:
        report.oversized += inserted


def _oversize_error(size: int) -> str:
    return f"message of {size} bytes is over imap.max_message_size: only its header was fetched"


def size_text(size: int) -> str:
    """A size as people say it: "26.1 MB", "25 MB", "20 KB", "512 bytes"."""
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def _record_header_only(db: Database, item: _Fetched, limit: int, spec: SectionSpec | None) -> None:
    """The parsed record of a message too large to fetch, from its header (same transaction)."""
    assert item.raw is not None
    reason = f"too large: {size_text(item.size)}, over the {size_text(limit)} limit"
    _insert_parsed(
        db, mailbox.message_of(db, item.key), parse_header(item.raw, reason, spec), replace=False
    )


class ParseTimeout(BaseException):
    """A parse ran out of time (a BaseException: the parser's ``except Exception`` clauses,
    there to recover from malformed mail, must not swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with ``ParseTimeout``.

    Only in the main thread, where signals are delivered; a single C call (one regular
    expression) is interrupted only when it returns.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise ParseTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _parse_one(parser: Parser, spec: SectionSpec | None, raw: bytes) -> ParsedMessage | str:
    """The parse, or why it failed as text (a parser bug must not stop the batch)."""
    try:
        with _time_limit(PARSE_SECONDS):
            return parser(raw, spec)
    except ParseTimeout:
        return f"parse too slow: stopped after {PARSE_SECONDS:g} s"
    except Exception as e:
        return f"parse failed: {type(e).__name__}: {e}"


_worker_spec: SectionSpec | None = None


def _init_worker(spec: SectionSpec | None) -> None:
    global _worker_spec
    _worker_spec = spec


def _parse_in_worker(raw: bytes) -> ParsedMessage | str:
    return _parse_one(parse_message, _worker_spec, raw)


def parse_pending(
    db: Database,
    spec: SectionSpec | None,
    *,
    parser: Parser = parse_message,
    batch: int = 100,
    workers: int | None = None,
) -> tuple[int, int, int]:
    """Parse stored messages not parsed yet, each at most once per call.

    A message whose parse raises or runs out of time is kept with the error and tried
    again on a later call; after ``MAX_PARSE_ATTEMPTS`` failures it is quarantined, with
    a ``parsed`` record of its header saying why. Returns (parsed, retry,
    quarantined) counts. With many messages pending (a first sync), parsing runs in
    ``workers`` processes (default: one per CPU) while this one writes the results.
    """
    count = mailbox.pending_count(db)
    if workers is None:
        workers = (os.cpu_count() or 1) if count >= POOL_THRESHOLD else 0
    if workers <= 1 or parser is not parse_message:
        return _parse_rows(
            db, spec, batch, lambda raws: (_parse_one(parser, spec, r) for r in raws)
        )
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(spec,)) as pool:
        # imap: results stream back in order while this process writes earlier ones.
        return _parse_rows(db, spec, batch, lambda raws: pool.imap(_parse_in_worker, raws, 25))


def _parse_rows(
    db: Database,
    spec: SectionSpec | None,
    batch: int,
    parse_many: Callable[[list[bytes]], Iterator[ParsedMessage | str]],
    window: int = 1000,
) -> tuple[int, int, int]:
    counts = [0, 0, 0]  # parsed, retry, quarantined
    after = 0
    while True:
        rows = mailbox.pending(db, after, window)
        if not rows:
            return counts[0], counts[1], counts[2]
        for group in _by_size(rows, WINDOW_BYTES):
            ids = [message for message, _, _ in group]
            raws = mailbox.raws(db, ids)
            results = parse_many([raws.pop(i) for i in ids])
            for start in range(0, len(group), batch):
                with transaction(db):
                    for message, attempts, _ in group[start : start + batch]:
                        _record(db, spec, message, attempts, next(results), counts)
        after = rows[-1][0]


def _by_size(rows: list[tuple[int, int, int]], limit: int) -> Iterator[list[tuple[int, int, int]]]:
    """Consecutive rows whose messages add up to at most ``limit`` bytes (or one alone)."""
    group: list[tuple[int, int, int]] = []
    total = 0
    for row in rows:
        if group and total + row[2] > limit:
            yield group
            group, total = [], 0
        group.append(row)
        total += row[2]
    if group:
        yield group


def _record(
    db: Database,
    spec: SectionSpec | None,
    message: int,
    attempts: int,
    result: ParsedMessage | str,
    counts: list[int],
) -> None:
    if isinstance(result, ParsedMessage):
        record_parse(db, message, result)
        counts[0] += 1
        return
    failed = attempts + 1 >= MAX_PARSE_ATTEMPTS
    status = Parsing.QUARANTINED if failed else Parsing.RETRY
    mailbox.parse_failed(db, message, status, attempts + 1, result)
    counts[2 if failed else 1] += 1
    if failed:
        # Who sent it and in answer to what stays readable, with the reason.
        raw = mailbox.raw(db, message)
        reason = f"{result} ({MAX_PARSE_ATTEMPTS} attempts)"
        _insert_parsed(db, message, parse_header(raw, reason, spec), replace=False)


def record_parse(db: Database, message: int, result: ParsedMessage) -> None:
    """Store the parse of a message and mark it parsed."""
    _insert_parsed(db, message, result)
    mailbox.mark_parsed(db, message)


def _insert_parsed(
    db: Database, message: int, result: ParsedMessage, *, replace: bool = True
) -> None:
    """The ``parsed`` row of a message; ``replace=False`` keeps one already there."""
    row = (
        result.from_address, result.from_name, result.subject, result.date,
        result.in_reply_to[0] if result.in_reply_to else None, result.automatic,
        result.bounced_recipient, json.dumps(result.to_json(), ensure_ascii=False),
    )  # fmt: skip
    mailbox.save_parse(db, message, row, replace=replace)
