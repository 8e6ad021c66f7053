"""Ingest speed against the bare IMAP protocol, on the same Dovecot in the same run.

    .venv/bin/python bench/ingest.py [-n 10000]

Appends N realistic replies (multipart, about 3 KB, French) to a Dovecot folder, then
measures, each in a fresh process so that peak memory is its own:

- bare: imapclient, UID FETCH BODY.PEEK[] by batches of 500, bytes discarded;
- store: mailflow's sync of the folder into a fresh database (raw bytes durably stored);
- parse: mailflow's parse of what was stored;

and prints messages/second, the store/bare ratio (goal >= 0.5), the parse rate (goal
>= 1,500 msg/s with one worker per core on a 2-core machine), the full ingest rate
(store + parse, goal > 600 msg/s) and peak memory (goal < 200 MB). The machine may be
shared: compare figures taken in the same session, alternating the versions compared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

from mailflow.config import ImapConfig
from mailflow.localmail import PASSWORD, LocalMail
from mailflow.localmail.samples import sample_replies
from mailflow.programme.workflow import collect_spec
from mailflow.receiving.imap import session
from mailflow.receiving.ingest import parse_pending, sync_folder
from mailflow.store.db import open_db

USER = "bench@bench.test"
FOLDER = "INBOX"
ROOT = Path(__file__).resolve().parent.parent


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_fetch(port: int, queue: Any) -> None:
    start = time.perf_counter()
    client = IMAPClient("127.0.0.1", port=port, ssl=False)
    client.login(USER, PASSWORD)
    client.select_folder(FOLDER, readonly=True)
    uids = client.search(["UID", "1:*"])
    total = 0
    for i in range(0, len(uids), 500):
        for data in client.fetch(uids[i : i + 500], ["BODY.PEEK[]"]).values():
            total += len(data[b"BODY[]"])
    client.logout()
    queue.put(("bare", len(uids), time.perf_counter() - start, peak_mb(), total))


def mailflow_ingest(port: int, database: str, parse: bool, queue: Any) -> None:
    cfg = ImapConfig(
        host="127.0.0.1", port=port, security="none", username=USER,
        password_env="", password=PASSWORD, folders=(FOLDER,),
    )  # fmt: skip
    db = open_db(database)
    start = time.perf_counter()
    with session(cfg) as client:
        report = sync_folder(db, client, FOLDER, cfg)
    stored = time.perf_counter() - start
    queue.put(("store", report.stored, stored, peak_mb(), 0))
    if parse:
        start = time.perf_counter()
        parsed, _, _ = parse_pending(db, collect_spec(ROOT / "workflows"))
        queue.put(("parse", parsed, time.perf_counter() - start, peak_mb(), 0))


def run(target: Any, *args: Any) -> list[tuple[str, int, float, float, int]]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    process.join()
    results = []
    while not queue.empty():
        results.append(queue.get())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="messages (default 10000)")
    parser.add_argument("--rounds", type=int, default=3, help="fetch/store rounds (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as tmp:
        Path(tmp).chmod(0o755)
        servers = LocalMail(Path(tmp) / "mail", mail_format="sdbox").start()
        try:
            servers.add_user(USER)
            messages = sample_replies(args.n)
            size = sum(map(len, messages)) / len(messages)
            start = time.perf_counter()
            servers.append(USER, messages, FOLDER)
            print(f"appended {args.n} messages of {size / 1024:.1f} KB on average "
                  f"in {time.perf_counter() - start:.1f} s (MULTIAPPEND)")  # fmt: skip
            del messages
            results = []
            for i in range(args.rounds):  # alternate, so that both see the same machine
                results += run(bare_fetch, servers.imap_port)
                database = str(Path(tmp) / f"bench{i}.db")
                results += run(mailflow_ingest, servers.imap_port, database, i == 0)
        finally:
            servers.stop()
    rates = {}
    for name in ("bare", "store", "parse"):
        runs = sorted((r for r in results if r[0] == name), key=lambda r: r[2])
        median = runs[len(runs) // 2]
        rates[name] = (median[1], median[2], max(r[3] for r in runs))
    print(f"median of {args.rounds} rounds for bare and store:")
    for name, (count, seconds, mb) in rates.items():
        print(f"{name:>6}: {count} messages in {seconds:6.2f} s = {count / seconds:8.0f} msg/s, "
              f"peak RSS {mb:5.0f} MB")  # fmt: skip
    bare = rates["bare"][0] / rates["bare"][1]
    store = rates["store"][0] / rates["store"][1]
    full = rates["store"][0] / (rates["store"][1] + rates["parse"][1])
    print(f"ratio store/bare fetch: {store / bare:.2f} (goal >= 0.5)")
    parse = rates["parse"][0] / rates["parse"][1]
    print(f"parse rate: {parse:.0f} msg/s on {os.cpu_count()} cores (goal >= 1500 on 2)")
    print(f"full ingest (store + parse): {full:.0f} msg/s (goal > 600)")
    print(f"peak memory of mailflow ingest: {max(rates['store'][2], rates['parse'][2]):.0f} MB "
          "(goal < 200 MB)")  # fmt: skip


if __name__ == "__main__":
    main()
