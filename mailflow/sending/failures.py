"""The staff's notice of mail that could not be delivered: one a day at most, in plain words.

It tells what failed for good since the previous notice: addresses refused by the server
(5xx) or hard-bounced, which mailflow no longer writes to; addresses whose temporary
refusals outlasted every retry; mails that reached none of their recipients, or were not
sent because none was left. Each address appears once, a mail by its subject, a défi or
person by name. What fails after the day's notice (a calendar day in the programme's time
zone) goes into the next day's. Failures of mail to the staff themselves are not
reported, so that the notice never reports on itself.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from ..programme.roster import Roster, respondent_info, stored_roster
from ..store import outgoing
from ..store.db import Database, transaction
from ..store.states import Failure, Suppressed
from . import tokens
from .compose import Mailer
from .send import BACKOFF

_NOT_REPORTED = ("staff", "alias")  # recipients of mail to the staff: never reported
_REPORTED = (Failure.EXHAUSTED, Failure.MESSAGE)  # failures of an address told by address
_SMTP_ANSWER = re.compile(r"^\d{3}\s")


def report_failures(db: Database, mailer: Mailer, now: dt.datetime) -> bool:
    """Queue today's notice to the staff if something failed since the last one; True if queued."""
    config = mailer.config
    local = now.astimezone(config.timezone)
    day = local.date().isoformat()
    key = f"system:failures:{day}"
    with transaction(db):
        if outgoing.mail_id(db, key) is not None:
            return False  # today's notice went: what failed since waits for tomorrow's
        roster = stored_roster(db)
        addresses = _addresses(db, roster)
        mails = _mails(db, roster, set(addresses), config.timezone)
        if not addresses and not mails:
            return False
        context = {
            "addresses": list(addresses.values()),
            "mails": mails,
            "count": len(addresses) + len(mails),
            "now": local,
            "retry_hours": sum(BACKOFF) // 3600,
            "programme": {"name": config.addresses.sender_name, "alias": config.addresses.alias},
        }
        token = tokens.Token("system", local.strftime("%Y%m%d"), "failures", "staff")
        mail = mailer.compose(
            token, mailer.staff(db), "system/failures", config.language, context, now, key=key
        )
        outgoing.queue(db, mail, now)
        outgoing.mark_reported(db, day, now)
    return True


def _person(roster: Roster, address: str) -> dict[str, Any]:
    """Who an address is, as the roster names them."""
    names = [m.name for d in roster.defis for m in d.members if m.address == address and m.name]
    staff = [s.name for s in roster.staff if s.address == address]
    mentors = [m.name for m in roster.mentors if m.address == address]
    return {
        "address": address,
        "name": next((n for n in (*names, *staff, *mentors) if n), ""),
        "defis": [d.name for d in roster.defis if address in d.addresses],
        "staff": bool(staff),
        "mentor": bool(mentors),
        "events": [],
        "suppressed": False,
    }


def _addresses(db: Database, roster: Roster) -> dict[str, dict[str, Any]]:
    """Addresses that failed for good since the last notice, each once, with what happened."""
    found: dict[str, dict[str, Any]] = {}
    for address, reason, code, detail, outbox in outgoing.unreported_suppressions(db):
        entry = found.setdefault(address, _person(roster, address))
        answer = f"{code} {detail}".strip() if reason == Suppressed.REFUSED else code
        subject = outgoing.subject_of(db, outbox) if outbox else outgoing.last_subject(db, address)
        entry["events"].append({"kind": reason, "answer": answer, "subject": subject})
        entry["suppressed"] = True
    for address, failure, smtp, detail, subject in outgoing.unreported_failures(
        db, _REPORTED, _NOT_REPORTED
    ):
        entry = found.setdefault(address, _person(roster, address))
        answer = detail if failure == Failure.MESSAGE or smtp is None else f"{smtp} {detail}"
        entry["events"].append({"kind": failure, "answer": answer, "subject": subject})
    return found


def _mails(db: Database, roster: Roster, listed: set[str], tz: dt.tzinfo) -> list[dict[str, Any]]:
    """Mails that reached nobody since the last notice; ``listed``: addresses named so far."""
    mails = []
    for subject, recipient, to_addrs, failure, error, queued in outgoing.unreported_mails(
        db, _NOT_REPORTED
    ):
        to = [a.lower() for a in json.loads(to_addrs)]
        error = error or ""
        unnamed = [a for a in to if a not in listed] if failure == Failure.NO_RECIPIENT else []
        listed.update(unnamed)  # each address named once in the notice
        mails.append({
            "subject": subject,
            "queued": dt.datetime.fromisoformat(queued).astimezone(tz),
            "who": _recipient(roster, recipient, to),
            "kind": failure or Failure.REFUSED,  # rows failed before failures had kinds
            "answer": error if _SMTP_ANSWER.match(error) else "",
            "addresses": unnamed,
        })  # fmt: skip
    return mails


def _recipient(roster: Roster, recipient: str, to: list[str]) -> dict[str, str]:
    """Who a mail was for: a défi, a staff member, the cohort, or people named by the roster."""
    info = respondent_info(roster, recipient)
    if info["kind"] in ("defi", "staff"):
        return {"kind": info["kind"], "name": info["name"]}
    if recipient == "cohort":
        return {"kind": "cohort", "name": ", ".join(to)}
    people = [_person(roster, a) for a in to]
    return {"kind": "people", "name": ", ".join(p["name"] or p["address"] for p in people)}
