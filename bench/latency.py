"""Reply latency with the daemon on IMAP IDLE, and its CPU use while idle.

    .venv/bin/python bench/latency.py [-n 20] [--idle-seconds 60]

Starts the loopback servers and ``mailflow run`` (real clock, IDLE). For each of N replies:
the time from the SMTP server accepting it (delivered into Dovecot) to its row in SQLite
(``inbound``: stored, parsed and attributed). In the same run, a bare imapclient IDLE
client measures the time from the same delivery to Dovecot's EXISTS notice: the floor
that no IMAP client can beat. Prints medians and their ratio (goal: mailflow's median
under 1 s), then the daemon's CPU time over a minute of idling (goal: near zero).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from imapclient import IMAPClient

from mailflow.localmail import PASSWORD, LocalMail
from mailflow.localmail.samples import sample_replies

SHARED = "mailflow@latency.test"
WATCHER = "watcher@latency.test"


def rows(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("select count(*) from inbound").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_idle(
    port: int, ready: threading.Event, notices: list[float], stop: threading.Event
) -> None:
    client = IMAPClient("127.0.0.1", port=port, ssl=False)
    client.login(WATCHER, PASSWORD)
    client.select_folder("INBOX", readonly=True)
    client.idle()
    ready.set()
    while not stop.is_set():
        for response in client.idle_check(timeout=0.2):
            if len(response) > 1 and response[1] == b"EXISTS":
                notices.append(time.monotonic())
    client.idle_done()
    client.logout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20, help="replies (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle CPU window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailflow-latency-") as tmp, LocalMail() as servers:
        folder = Path(tmp)
        for user in (SHARED, WATCHER, "equipe@latency.test", "promo@latency.test"):
            servers.add_user(user)
        db = folder / "mailflow.db"
        (folder / "mailflow.toml").write_text(
            servers.config_text(
                shared=SHARED,
                alias="equipe@latency.test",
                cohort="promo@latency.test",
                mailflow=f'database = "{db}"',
            )
        )
        env = {**os.environ, "MAILFLOW_IMAP_PASSWORD": PASSWORD}
        log = (folder / "daemon.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "mailflow", "-c", str(folder / "mailflow.toml"), "run",
             "--heartbeat", "600"],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        ready, stop, notices = threading.Event(), threading.Event(), []
        watcher = threading.Thread(target=bare_idle, args=(servers.imap_port, ready, notices, stop))
        watcher.start()
        ready.wait(10)
        try:
            while "mailflow running" not in (folder / "daemon.log").read_text():
                time.sleep(0.05)
            time.sleep(1)
            mailflow, bare = [], []
            for i, raw in enumerate(sample_replies(args.n, seed=7)):
                before = len(notices)
                servers.send(raw, [SHARED, WATCHER], "reply@latency.test")
                delivered = time.monotonic()
                while rows(db) <= i:
                    time.sleep(0.005)
                mailflow.append(time.monotonic() - delivered)
                while len(notices) <= before:
                    time.sleep(0.005)
                bare.append(notices[before] - delivered)
                time.sleep(0.3)
            print(f"{args.n} replies, time from SMTP delivery to (seconds):")
            print(f"  bare IMAP IDLE notice:     median {statistics.median(bare):.3f}, "
                  f"max {max(bare):.3f}")  # fmt: skip
            p90 = sorted(mailflow)[int(len(mailflow) * 0.9) - 1]
            print(f"  mailflow row in SQLite:    median {statistics.median(mailflow):.3f}, "
                  f"p90 {p90:.3f}, max {max(mailflow):.3f} (goal: median < 1 s)")  # fmt: skip
            ratio = statistics.median(mailflow) / statistics.median(bare)
            print(f"  ratio mailflow / bare (medians): {ratio:.2f}")
            time.sleep(2)
            start = cpu_seconds(daemon.pid)
            time.sleep(args.idle_seconds)
            used = cpu_seconds(daemon.pid) - start
            share = 100 * used / args.idle_seconds
            print(f"daemon CPU while idle for {args.idle_seconds:.0f} s: {used:.2f} s "
                  f"({share:.2f} % of a core; goal: near zero)")  # fmt: skip
        finally:
            stop.set()
            watcher.join()
            daemon.terminate()
            daemon.wait(20)
            log.close()


if __name__ == "__main__":
    main()
