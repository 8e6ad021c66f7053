"""Time and peak memory of parsing and ingesting hostile messages, each in a fresh process.

    .venv/bin/python bench/hostile.py [--only NAME ...] [--no-ingest]

Builds five messages that a careless parser chokes on (a 30 MB subject, 5,000 MIME
nesting levels, 100,000 header lines, a 24 MB base64 text part, a 24.6 MB message with
attachments) and measures, each in its own process so that peak memory is its own:

- parse: ``parse_message`` on the bytes read from a file;
- ingest: ``ingest`` of a Dovecot folder holding only that message into a fresh database
  (fetch, store and parse), with the default ``imap.max_message_size`` of 25 MB.

Peak RSS is ``ru_maxrss``; "base" is the RSS of the same process before the work, with
mailflow imported. Goals: each parsed in well under two seconds, ingest peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailflow.localmail.hostile import MESSAGES

MB = 1024 * 1024
USER = "hostile@bench.test"
ROOT = Path(__file__).resolve().parent.parent


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _parse(path: str, queue: Any) -> None:
    from mailflow.programme.workflow import collect_spec
    from mailflow.receiving.parse import parse_message

    spec = collect_spec(ROOT / "workflows")
    raw = Path(path).read_bytes()
    base = _rss()
    start = time.perf_counter()
    parsed = parse_message(raw, spec)
    seconds = time.perf_counter() - start
    summary = {
        "from": parsed.from_address, "in_reply_to": parsed.in_reply_to[:1],
        "subject": len(parsed.subject), "text": len(parsed.text),
        "needs": (parsed.sections.get("needs") or "")[:40], "warnings": parsed.warnings[:3],
    }  # fmt: skip
    queue.put((seconds, base, _rss(), summary))


def _ingest(port: int, folder: str, database: str, queue: Any) -> None:
    from mailflow.config import ImapConfig
    from mailflow.localmail import PASSWORD
    from mailflow.programme.workflow import collect_spec
    from mailflow.receiving.ingest import ingest
    from mailflow.store.db import open_db

    cfg = ImapConfig(
        host="127.0.0.1", port=port, security="none", username=USER,
        password_env="", password=PASSWORD, folders=(folder,), timeout=120,
    )  # fmt: skip
    spec = collect_spec(ROOT / "workflows")
    db = open_db(database)
    base = _rss()
    start = time.perf_counter()
    report = ingest(db, cfg, spec)
    seconds = time.perf_counter() - start
    status, error = db.execute("select status, error from messages").fetchone()
    row = db.execute("select data from parsed").fetchone()
    data = json.loads(row[0]) if row else {}
    summary = {
        "stored": report.stored, "parsed": report.parsed, "status": status,
        "error": (error or "")[:80], "from": data.get("from"),
        "unreadable": data.get("unreadable"),
    }  # fmt: skip
    queue.put((seconds, base, _rss(), summary))


# Forked from a small server started first: a child's ru_maxrss starts from its parent's
# size at fork time, and this process holds the messages it builds.
CONTEXT = multiprocessing.get_context("forkserver")


def _nothing() -> None:
    pass


def _in_process(target: Callable[..., None], *args: Any) -> tuple[float, float, float, Any]:
    queue = CONTEXT.Queue()
    process = CONTEXT.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get(timeout=600)
    process.join()
    return result  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(MESSAGES), help="these messages")
    parser.add_argument("--no-ingest", action="store_true", help="parse only (no Dovecot)")
    args = parser.parse_args()
    first = CONTEXT.Process(target=_nothing)  # starts the fork server while this one is small
    first.start()
    first.join()
    names = args.only or list(MESSAGES)
    with tempfile.TemporaryDirectory(prefix="mailflow-hostile-") as tmp:
        Path(tmp).chmod(0o755)
        servers = None
        if not args.no_ingest:
            from mailflow.localmail import LocalMail

            servers = LocalMail(Path(tmp) / "mail").start()
            servers.add_user(USER)
        try:
            for i, name in enumerate(names):
                raw = MESSAGES[name]()
                path = Path(tmp) / f"{name}.eml"
                path.write_bytes(raw)
                print(f"{name}: {len(raw) / MB:.1f} MB")
                seconds, base, peak, summary = _in_process(_parse, str(path))
                print(f"  parse : {seconds:6.2f} s, peak RSS {peak:4.0f} MB (base {base:3.0f})"
                      f"  {summary}")  # fmt: skip
                if servers is not None:
                    folder = f"F{i}"
                    servers.append(USER, [raw], folder)
                    del raw
                    seconds, base, peak, summary = _in_process(
                        _ingest, servers.imap_port, folder, str(Path(tmp) / f"{i}.db")
                    )
                    print(f"  ingest: {seconds:6.2f} s, peak RSS {peak:4.0f} MB (base {base:3.0f})"
                          f"  {summary}")  # fmt: skip
        finally:
            if servers is not None:
                servers.stop()


if __name__ == "__main__":
    main()
