"""Reading the shared mailbox into the store: every message once, raw bytes first, never lost.

Folders are synced by UID. For each batch of UIDs, one FETCH reads sizes and Message-IDs;
messages already stored (same Message-ID, e.g. after a UIDVALIDITY change or a copy to
another folder) only gain a location; messages over ``imap.max_message_size`` get their
header stored and are quarantined without their body being fetched; the rest are fetched
with ``BODY.PEEK[]`` (nothing is marked read) in chunks bounded in bytes, so memory stays
flat. Each chunk is committed in one transaction together with the folder's new last
UID: a process killed at any point re-fetches at most the chunk it was in, and stores
nothing twice. Parsing comes after, from the stored bytes, and can be re-run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils
from imapclient import IMAPClient

from .config import ImapConfig
from .db import now_utc, transaction
from .imap import session
from .parse import ParsedMessage, parse_message
from .sections import SectionSpec

log = logging.getLogger(__name__)

CHUNK_BYTES = 16 * 1024 * 1024
POOL_THRESHOLD = 1000  # pending messages from which parsing is worth extra processes
MAX_PARSE_ATTEMPTS = 3
_MSGID = re.compile(rb"<[^<>\s]+>")
_HEADER_FIELDS = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"

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
    key: str
    message_id: str | None
    size: int
    internal_date: str | None
    raw: bytes | None = None
    complete: bool = True
    known: bool = False  # already stored under this Message-ID: only a new location


def message_key(message_id: str | None, raw: bytes) -> str:
    """The identity of a message: its Message-ID, or the SHA-256 of its bytes without one."""
    return message_id or "sha256:" + hashlib.sha256(raw).hexdigest()


def _message_id(header_bytes: bytes) -> str | None:
    value = header_bytes.split(b":", 1)[1] if b":" in header_bytes else b""
    found = _MSGID.search(value)
    if found:
        return found.group(0).decode("ascii", "replace")
    cleaned = value.strip().decode("ascii", "replace")
    return cleaned or None


def _internal_date(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


def ingest(
    db: sqlite_utils.Database,
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
            report.folders = [sync_folder(db, own, f, cfg, progress) for f in cfg.folders]
    else:
        report.folders = [sync_folder(db, client, f, cfg, progress) for f in cfg.folders]
    report.parsed, report.retry, report.quarantined = parse_pending(db, spec)
    return report


def sync_folder(
    db: sqlite_utils.Database,
    client: IMAPClient,
    folder: str,
    cfg: ImapConfig,
    progress: Progress | None = None,
) -> FolderReport:
    """Store every message of ``folder`` not stored yet; safe to interrupt at any point."""
    info = client.select_folder(folder, readonly=True)
    uidvalidity = int(info[b"UIDVALIDITY"])
    report = FolderReport(folder, uidvalidity)
    last_uid = _folder_state(db, folder, uidvalidity, report)
    uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
    report.seen = len(uids)
    done = 0
    for batch in _chunks(uids, cfg.batch_size):
        for chunk in _plan(db, client, batch, cfg.max_message_size):
            _fetch_bodies(client, chunk)
            _store(db, folder, uidvalidity, chunk, report)
            done += len(chunk)
            if progress:
                progress(folder, done, len(uids))
    return report


def _folder_state(
    db: sqlite_utils.Database, folder: str, uidvalidity: int, report: FolderReport
) -> int:
    row = db.execute(
        "select uidvalidity, last_uid from folders where name = ?", [folder]
    ).fetchone()
    if row is not None and row[0] == uidvalidity:
        return int(row[1])
    if row is not None:
        # The server renumbered the folder: read it again from the start. Messages already
        # stored are recognised by Message-ID and only gain a new location.
        log.warning("%s: UIDVALIDITY changed %s -> %s, resyncing", folder, row[0], uidvalidity)
        report.resynced = True
    with transaction(db):
        db.execute(
            "insert into folders (name, uidvalidity, last_uid, synced_at) values (?, ?, 0, ?)"
            " on conflict (name) do update set uidvalidity = excluded.uidvalidity,"
            " last_uid = 0, synced_at = excluded.synced_at",
            [folder, uidvalidity, now_utc()],
        )
    return 0


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _plan(
    db: sqlite_utils.Database, client: IMAPClient, uids: list[int], max_size: int
) -> Iterator[list[_Fetched]]:
    """One metadata FETCH for the batch, then chunks of at most ``CHUNK_BYTES`` to fetch."""
    meta = client.fetch(
        uids, ["RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
    )
    ids = {_message_id(_header_bytes(data)) for data in meta.values()} - {None}
    known = _known_keys(db, ids)
    chunk: list[_Fetched] = []
    budget = 0
    for uid in uids:
        data = meta.get(uid)
        if data is None:  # expunged between SEARCH and FETCH
            continue
        message_id = _message_id(_header_bytes(data))
        size = int(data.get(b"RFC822.SIZE", 0))
        item = _Fetched(
            uid, message_id or "", message_id, size, _internal_date(data.get(b"INTERNALDATE"))
        )
        item.complete = size <= max_size
        item.known = message_id in known
        cost = size if item.complete and not item.known else 0
        if chunk and budget + cost > CHUNK_BYTES:
            yield chunk
            chunk, budget = [], 0
        chunk.append(item)
        budget += cost
    if chunk:
        yield chunk


def _header_bytes(data: dict[bytes, Any]) -> bytes:
    return next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"") or b""


def _known_keys(db: sqlite_utils.Database, keys: set[str | None]) -> set[str]:
    found: set[str] = set()
    wanted = sorted(k for k in keys if k)
    for i in range(0, len(wanted), 500):
        part = wanted[i : i + 500]
        marks = ",".join("?" * len(part))
        rows = db.execute(f"select message_key from messages where message_key in ({marks})", part)
        found.update(row[0] for row in rows)
    return found


def _fetch_bodies(client: IMAPClient, chunk: list[_Fetched]) -> None:
    whole = [f.uid for f in chunk if f.complete and not f.known]
    partial = [f.uid for f in chunk if not f.complete and not f.known]
    bodies = client.fetch(whole, ["BODY.PEEK[]"]) if whole else {}
    headers = client.fetch(partial, ["BODY.PEEK[HEADER]"]) if partial else {}
    for item in chunk:
        if item.known:
            continue
        data = bodies.get(item.uid) if item.complete else headers.get(item.uid)
        if data is None:
            continue
        item.raw = data.get(b"BODY[]") if item.complete else data.get(b"BODY[HEADER]")
        if item.raw is not None:
            item.key = message_key(item.message_id, item.raw)


def _store(
    db: sqlite_utils.Database,
    folder: str,
    uidvalidity: int,
    chunk: list[_Fetched],
    report: FolderReport,
) -> None:
    """Insert a chunk's messages and locations and advance the folder, all or nothing."""
    stored_at = now_utc()
    with transaction(db):
        for item in chunk:
            if item.known:
                report.duplicates += 1
                _locate(db, folder, uidvalidity, item)
                continue
            if item.raw is None:
                continue  # expunged meanwhile
            cursor = db.execute(
                "insert into messages (message_key, message_id, sha256, size, raw, complete,"
                " internal_date, stored_at, status, error) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " on conflict (message_key) do nothing",
                [
                    item.key, item.message_id, hashlib.sha256(item.raw).hexdigest(), item.size,
                    item.raw, int(item.complete), item.internal_date, stored_at,
                    "new" if item.complete else "quarantined",
                    None if item.complete else _oversize_error(item.size),
                ],
            )  # fmt: skip
            if cursor.rowcount:
                report.stored += 1
                report.oversized += not item.complete
            else:
                report.duplicates += 1
            _locate(db, folder, uidvalidity, item)
        db.execute(
            "update folders set last_uid = max(last_uid, ?), synced_at = ? where name = ?",
            [max(item.uid for item in chunk), stored_at, folder],
        )


def _locate(db: sqlite_utils.Database, folder: str, uidvalidity: int, item: _Fetched) -> None:
    db.execute(
        "insert into message_locations (folder, uidvalidity, uid, message)"
        " select ?, ?, ?, id from messages where message_key = ? on conflict do nothing",
        [folder, uidvalidity, item.uid, item.key],
    )


def _oversize_error(size: int) -> str:
    return f"message of {size} bytes is over imap.max_message_size: only its header was fetched"


def _parse_one(parser: Parser, spec: SectionSpec | None, raw: bytes) -> ParsedMessage | str:
    """The parse, or the error it raised as text (a parser bug must not stop the batch)."""
    try:
        return parser(raw, spec)
    except Exception as e:
        return f"parse failed: {type(e).__name__}: {e}"


_worker_spec: SectionSpec | None = None


def _init_worker(spec: SectionSpec | None) -> None:
    global _worker_spec
    _worker_spec = spec


def _parse_in_worker(raw: bytes) -> ParsedMessage | str:
    return _parse_one(parse_message, _worker_spec, raw)


def parse_pending(
    db: sqlite_utils.Database,
    spec: SectionSpec | None,
    *,
    parser: Parser = parse_message,
    batch: int = 100,
    workers: int | None = None,
) -> tuple[int, int, int]:
    """Parse stored messages not parsed yet, each at most once per call.

    A message whose parse raises is kept with the error and tried again on a later call;
    after ``MAX_PARSE_ATTEMPTS`` failures it is quarantined. Returns (parsed, retry,
    quarantined) counts. With many messages pending (a first sync), parsing runs in
    ``workers`` processes (default: one per CPU) while this one writes the results.
    """
    pending = db.execute("select count(*) from messages where status in ('new', 'retry')")
    count = pending.fetchone()[0]
    if workers is None:
        workers = (os.cpu_count() or 1) if count >= POOL_THRESHOLD else 0
    if workers <= 1 or parser is not parse_message:
        return _parse_rows(db, batch, lambda raws: [_parse_one(parser, spec, r) for r in raws])
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(spec,)) as pool:
        return _parse_rows(db, batch, lambda raws: pool.map(_parse_in_worker, raws, chunksize=50))


def _parse_rows(
    db: sqlite_utils.Database,
    batch: int,
    parse_all: Callable[[list[bytes]], list[ParsedMessage | str]],
) -> tuple[int, int, int]:
    parsed = retry = quarantined = 0
    after = 0
    while True:
        rows = db.execute(
            "select id, raw, attempts from messages where status in ('new', 'retry')"
            " and id > ? order by id limit ?",
            [after, batch],
        ).fetchall()
        if not rows:
            return parsed, retry, quarantined
        results = parse_all([raw for _, raw, _ in rows])
        with transaction(db):
            for (message, _, attempts), result in zip(rows, results, strict=True):
                if isinstance(result, str):
                    failed = attempts + 1 >= MAX_PARSE_ATTEMPTS
                    db.execute(
                        "update messages set status = ?, attempts = ?, error = ? where id = ?",
                        ["quarantined" if failed else "retry", attempts + 1, result, message],
                    )
                    quarantined += failed
                    retry += not failed
                    continue
                record_parse(db, message, result)
                parsed += 1
        after = rows[-1][0]


def record_parse(db: sqlite_utils.Database, message: int, result: ParsedMessage) -> None:
    db.execute(
        "insert into parsed (message, from_address, from_name, subject, date, in_reply_to,"
        " automatic, bounced_recipient, data, parsed_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " on conflict (message) do update set from_address = excluded.from_address,"
        " from_name = excluded.from_name, subject = excluded.subject, date = excluded.date,"
        " in_reply_to = excluded.in_reply_to, automatic = excluded.automatic,"
        " bounced_recipient = excluded.bounced_recipient, data = excluded.data,"
        " parsed_at = excluded.parsed_at",
        [
            message, result.from_address, result.from_name, result.subject, result.date,
            result.in_reply_to[0] if result.in_reply_to else None, result.automatic,
            result.bounced_recipient, json.dumps(result.to_json(), ensure_ascii=False),
            now_utc(),
        ],
    )  # fmt: skip
    db.execute("update messages set status = 'parsed', error = null where id = ?", [message])
