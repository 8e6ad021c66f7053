"""Sending speed against bare smtplib, and digest assembly time, in one run.

    .venv/bin/python bench/send.py [-n 1000]

1. A roster of N défis (one member mailbox each) on the loopback Dovecot and SMTP
   servers; mailflow renders and queues the Friday requests (one per défi) and the
   digest, then delivers its outbox. Then bare smtplib sends the same prebuilt messages
   over one connection to the same server. Prints both rates and the ratio (goal >= 0.8).
2. A database with 100 défis and a year (52 weeks) of answers: the time to assemble and
   render one digest (goal < 0.5 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import smtplib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mailflow.admin.reports import find_workflow
from mailflow.config import load_config
from mailflow.localmail import PASSWORD, LocalMail
from mailflow.localmail.samples import DIFFICULTIES, NEEDS, VICTORIES
from mailflow.programme.digest import digest_context
from mailflow.programme.occurrences import occurrence_day
from mailflow.programme.steps import Occurrence, base_context
from mailflow.running.engine import Engine
from mailflow.sending.send import deliver
from mailflow.store.db import open_db, transaction

ENV = {"MAILFLOW_IMAP_PASSWORD": PASSWORD, "MAILFLOW_SECRET": "bench"}


def write_roster(path: Path, n: int) -> list[str]:
    members = [f"membre{i}@defi{i}.bench.test" for i in range(n)]
    path.write_text(
        "\n".join(
            f'[[defi]]\nid = "defi{i}"\nname = "Défi {i}"\nhost = "Administration {i}"\n'
            f'members = ["{m}"]\n'
            for i, m in enumerate(members)
        )
    )
    return members


def bare_send(port: int, mails: list[tuple[str, str, bytes]]) -> float:
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for sender, to, raw in mails:
            client.sendmail(sender, json.loads(to), raw)
    return time.perf_counter() - start


def bench_send(n: int, folder: Path, rounds: int) -> None:
    with LocalMail(mail_format="sdbox") as servers:
        members = write_roster(folder / "roster.toml", n)
        for address in [*members, "mailflow@bench.test", "equipe@bench.test", "promo@bench.test"]:
            servers.add_user(address)
        settings = f'database = "{folder / "send.db"}"\nroster = "{folder / "roster.toml"}"'
        (folder / "mailflow.toml").write_text(servers.config_text(
            shared="mailflow@bench.test", alias="equipe@bench.test", cohort="promo@bench.test",
            mailflow=settings,
        ))  # fmt: skip
        engine = Engine(load_config(folder / "mailflow.toml", ENV))
        friday = dt.datetime(2026, 11, 27, 9, tzinfo=engine.config.timezone)

        start = time.perf_counter()
        engine.run_due(friday)
        engine.run_due(friday.replace(hour=15))
        queued = time.perf_counter() - start
        count = engine.db.execute("select count(*) from outbox").fetchone()[0]

        mails = engine.db.execute("select sender, to_addrs, raw from outbox order by id").fetchall()
        bare_send(servers.smtp_port, mails)  # warm-up: Dovecot creates each mailbox once
        # Each round delivers from a copy of the database as it was once queued: the outbox
        # is reset without knowing what delivery records about each mail.
        queued_db = folder / "queued.db"
        engine.db.execute("vacuum into ?", [str(queued_db)])
        delivered_runs, bare_runs = [], []
        for i in range(rounds):  # alternate, so that both see the same server and mailboxes
            round_db = folder / f"round{i}.db"
            shutil.copyfile(queued_db, round_db)
            db = open_db(round_db)
            start = time.perf_counter()
            report = deliver(db, engine.config.smtp, friday.replace(hour=15), limit=count)
            delivered_runs.append(time.perf_counter() - start)
            db.close()
            assert report.sent == count, report
            bare_runs.append(bare_send(servers.smtp_port, mails))
        delivered, bare = statistics.median(delivered_runs), statistics.median(bare_runs)

    print(f"{count} mails (requests to {n} défis and the digest), median of {rounds} rounds:")
    print(f"  render + queue:        {queued:6.2f} s = {count / queued:7.0f} mails/s")
    print(f"  mailflow outbox send:  {delivered:6.2f} s = {count / delivered:7.0f} mails/s")
    print(f"  bare smtplib send:     {bare:6.2f} s = {count / bare:7.0f} mails/s")
    print(f"  ratio outbox / bare:   {bare / delivered:.2f} (goal >= 0.8)")
    print(f"  ratio end to end / bare (render + queue + send): {bare / (queued + delivered):.2f}")


def answer(db: Any, rng: random.Random, message: int, occurrence: str, i: int) -> None:
    """One stored answer of défi ``i``, as the engine records it."""
    sections = {
        "victories": rng.choice(VICTORIES),
        "difficulties": rng.choice(DIFFICULTIES) or None,
        "needs": rng.choice(NEEDS) or None,
    }
    fields = {"mood": "🙂", "priority": None, "key_date": None}
    data = {"sections": sections, "fields": fields, "text": "…", "from_name": "X"}
    db.execute(
        "insert into messages (id, message_key, sha256, size, raw, stored_at, status)"
        " values (?, ?, '', 0, x'', '', 'parsed')",
        [message, f"<{message}@x>"],
    )
    db.execute(
        "insert into inbound (message, received_at, kind, status, sender, workflow, occurrence,"
        " respondent, via, data) values (?, ?, 'answer', ?, ?, 'retro', ?, ?, 'token', ?)",
        [
            message, f"2026-01-01T10:{i % 60:02d}:00+00:00", "late" if i % 17 == 0 else "counted",
            f"m{i}@x.test", occurrence, f"d-d{i}", json.dumps(data, ensure_ascii=False),
        ],
    )  # fmt: skip


def bench_digest(folder: Path) -> None:
    rng = random.Random(3)
    db = open_db(folder / "history.db")
    with transaction(db):
        for i in range(100):
            db.execute(
                "insert into defis (id, name, host) values (?, ?, ?)",
                [f"d{i}", f"Défi {i}", "Adm."],
            )
            db.execute(
                "insert into members (defi, address) values (?, ?)", [f"d{i}", f"m{i}@x.test"]
            )
        message = 0
        for week in range(1, 53):
            for i in range(100):
                message += 1
                answer(db, rng, message, f"2026-W{week:02d}", i)
    config = load_config(folder / "mailflow.toml", ENV)
    config = type(config)(**{**config.__dict__, "database": folder / "history.db", "roster": None})
    engine = Engine(config, db)
    workflow = find_workflow(engine, "retro")
    occurrence = "2026-W48"
    day = occurrence_day(workflow.schedule, occurrence)
    assert day is not None
    step = workflow.step("digest")
    times = []
    for _ in range(5):
        start = time.perf_counter()
        now = dt.datetime(2026, 11, 27, 14, tzinfo=dt.UTC)
        context = base_context(
            engine.config, Occurrence(workflow, occurrence, day), now, now, False
        )
        context |= digest_context(db, workflow, occurrence, day, engine.config.timezone)
        context |= {"language": "fr", "recipient": "cohort", "defi": None}
        rendered = engine.renderer.render(step.template, "fr", context)
        times.append(time.perf_counter() - start)
    rows = db.execute("select count(*) from inbound").fetchone()[0]
    print(f"digest of 100 défis with {rows} answers in the database (52 weeks):")
    print(f"  assemble + render: median {statistics.median(times) * 1000:.0f} ms over 5 runs "
          f"({len(rendered.text)} characters of text; goal < 500 ms)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="défis, one member each (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="send rounds (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as tmp:
        bench_send(args.n, Path(tmp), args.rounds)
        bench_digest(Path(tmp))


if __name__ == "__main__":
    main()
