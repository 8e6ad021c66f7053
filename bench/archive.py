"""The web archive's latency: a défi's history page and a search, over HTTP on loopback.

    .venv/bin/python bench/archive.py [--small] [-n 50]

Makes a live database of 100 défis × 3 years of weekly answers (15,600 answers, each
with its request in the outbox; ``--small``: 10 défis × 1 year, for CI smoke runs),
starts ``mailflow serve`` on it as a process (which builds the archive database), logs
in, then asks N times, taking turns, for a défi's history (the canned query's HTML page)
and for a full-text search of the answers (the view's HTML page with ``_search``). Prints
the time to build the archive, then the median and p90 of each (goal: median under
100 ms for the page, under 50 ms for the search).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from datasette_auth_passwords.utils import hash_password

from mailflow.localmail.samples import DIFFICULTIES, NEEDS, VICTORIES
from mailflow.store.db import open_db, transaction

PASSWORD = "bench"
RARE = "subvention"  # in about one answer in a hundred: a search with a page of results
CONFIG = """[mailflow]
database = "{db}"
[imap]
host = "127.0.0.1"
username = "mailflow@bench.test"
[smtp]
host = "127.0.0.1"
[addresses]
from = "mailflow@bench.test"
alias = "equipe@bench.test"
cohort = "promo@bench.test"
[archive]
port = {port}
"""


def fill(db_path: Path, defis: int, weeks: int, rng: random.Random) -> int:
    """Défis, a request per défi and week, and most défis' answers, as the engine stores them."""
    db = open_db(db_path)
    first = dt.date(2024, 1, 5)  # a Friday
    message = 0
    with transaction(db):
        for i in range(defis):
            db.execute("insert into defis (id, name, host) values (?, ?, ?)",
                       [f"d{i:03d}", f"Défi {i:03d}", "Administration"])  # fmt: skip
        for week in range(weeks):
            day = first + dt.timedelta(weeks=week)
            year, number, _ = day.isocalendar()
            occurrence = f"{year}-W{number:02d}"
            at = dt.datetime.combine(day, dt.time(10), dt.UTC).isoformat()
            for i in range(defis):
                message += 1
                _request(db, message, occurrence, i, at)
                _answer(db, rng, message, occurrence, i, at)
    return message


def _request(db: object, n: int, occurrence: str, i: int, at: str) -> None:
    db.execute(  # type: ignore[attr-defined]
        "insert into outbox (key, workflow, occurrence, step, recipient, to_addrs, sender,"
        " message_id, subject, raw, status, next_attempt_at, queued_at, sent_at) values"
        " (?, 'retro', ?, 'request', ?, '[]', 'mailflow@bench.test', ?, 'Rétro', x'00',"
        " 'sent', ?, ?, ?)",
        [f"retro:{occurrence}:request:{i}", occurrence, f"d-d{i:03d}", f"<{n}@bench.test>",
         at, at, at],
    )  # fmt: skip


def _answer(db: object, rng: random.Random, n: int, occurrence: str, i: int, at: str) -> None:
    victories = rng.choice(VICTORIES) + (f", une {RARE} obtenue" if rng.random() < 0.01 else "")
    sections = {"victories": victories, "difficulties": rng.choice(DIFFICULTIES) or None,
                "needs": rng.choice(NEEDS) or None}  # fmt: skip
    text = "\n\n".join(f"{k} :\n{v}" for k, v in sections.items() if v)
    data = {"sections": sections, "fields": {"mood": "🙂", "priority": None, "key_date": None},
            "text": text, "from_name": "X"}  # fmt: skip
    db.execute(  # type: ignore[attr-defined]
        "insert into messages (id, message_key, sha256, size, raw, stored_at, status)"
        " values (?, ?, '', 0, x'', ?, 'parsed')",
        [n, f"<a{n}@bench.test>", at],
    )
    db.execute(  # type: ignore[attr-defined]
        "insert into inbound (message, received_at, kind, status, sender, workflow, occurrence,"
        " respondent, via, data) values (?, ?, 'answer', 'counted', ?, 'retro', ?, ?, 'token', ?)",
        [n, at, f"m{i}@bench.test", occurrence, f"d-d{i:03d}",
         json.dumps(data, ensure_ascii=False)],
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, process: subprocess.Popen[bytes], log: Path) -> float:
    start = time.perf_counter()
    while True:
        if process.poll() is not None:
            sys.exit(f"mailflow serve exited: {log.read_text()}")
        try:
            with httpx.Client() as probe:
                probe.get(f"{url}/-/login", timeout=1)
            return time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(0.05)


def log_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    token = re.search(r'name="csrftoken" value="([^"]+)"', client.get("/-/login").text)
    assert token is not None
    answer = client.post("/-/login", data={"username": "bench", "password": PASSWORD,
                                           "csrftoken": token.group(1)})  # fmt: skip
    assert answer.status_code == 302, answer.text
    return client


def timed(client: httpx.Client, path: str, params: dict[str, str], expect: str) -> float:
    start = time.perf_counter()
    answer = client.get(path, params=params)
    seconds = time.perf_counter() - start
    assert answer.status_code == 200 and expect in answer.text, (path, answer.status_code)
    return seconds


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--small", action="store_true", help="10 défis × 52 weeks (CI smoke)")
    parser.add_argument("-n", type=int, default=50, help="requests of each kind (default 50)")
    args = parser.parse_args()
    defis, weeks = (10, 52) if args.small else (100, 156)
    rng = random.Random(13)
    with tempfile.TemporaryDirectory(prefix="mailflow-archive-") as tmp:
        folder = Path(tmp)
        answers = fill(folder / "mailflow.db", defis, weeks, rng)
        port = free_port()
        (folder / "mailflow.toml").write_text(CONFIG.format(db=folder / "mailflow.db", port=port))
        env = {**os.environ, "MAILFLOW_ARCHIVE_PASSWORDS": f"bench:{hash_password(PASSWORD)}"}
        log = folder / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "mailflow", "-c", str(folder / "mailflow.toml"), "serve"],
                env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            built = wait_up(url, process, log)
            client = log_in(url)
            page, search = [], []
            for k in range(args.n + 3):  # the first three warm the caches
                name = f"Défi {rng.randrange(defis):03d}"
                history = timed(client, "/archive/historique_d_un_defi", {"défi": name}, name)
                found = timed(client, "/archive/reponses_retro", {"_search": RARE}, RARE)
                if k >= 3:
                    page.append(history)
                    search.append(found)
            client.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    ms = 1000
    print(f"archive of {answers} answers ({defis} défis × {weeks} weeks), built and served in "
          f"{built:.1f} s; over {args.n} requests each: history page median "
          f"{statistics.median(page) * ms:.0f} ms, p90 {p90(page) * ms:.0f} ms (goal < 100); "
          f"search median {statistics.median(search) * ms:.0f} ms, p90 {p90(search) * ms:.0f} ms "
          "(goal < 50)")  # fmt: skip


if __name__ == "__main__":
    main()
