"""What one tick of ``mailflow demo`` did, as facts a template can tell the staff.

The demo narrates from the database the tick left behind: the messages it read
(``inbound``), the mails it wrote and what the server said of each address (``outbox``,
``deliveries``). Each mail gets a kind (a request, a receipt, a notice to the staff…)
and each address a person from the roster, so that the wording, which lives in
``templates/demo/``, names people and défis, never keys, statuses or UTC instants.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ..programme.events import get_event
from ..programme.roster import Roster
from ..programme.workflow import Step, Workflow
from ..store import inbound, outgoing
from ..store.db import Database
from ..store.states import Change, Delivery, Respondent, Sending

Person = dict[str, Any]


def _person(address: str, name: str, defi: str, role: str, planted: bool = False) -> Person:
    # ``label`` is how the narration names someone: their name, else their address.
    return {"name": name, "address": address, "label": name or address, "defi": defi,
            "role": role, "planted": planted}  # fmt: skip


@dataclass(frozen=True)
class People:
    """Everyone the demo writes to or hears from, by lower-cased address."""

    by_address: dict[str, Person]
    defis: dict[str, str]  # respondent ("d-…") → défi name

    @classmethod
    def of(cls, roster: Roster, planted: set[str], cohort: str) -> People:
        found = {cohort.lower(): _person(cohort, "", "", "cohort")}
        for defi in roster.defis:
            for m in defi.members:
                key = m.address.lower()
                found[key] = _person(m.address, m.name, defi.name, "member", key in planted)
        for staff in roster.staff:
            found[staff.address.lower()] = _person(staff.address, staff.name, "", "staff")
        return cls(found, {Respondent.defi(d.id): d.name for d in roster.defis})

    def person(self, address: str, name: str = "") -> Person:
        return dict(self.by_address.get(address.lower()) or _person(address, name, "", "other"))


def read(
    db: Database, now: dt.datetime, people: People, workflows: list[Workflow]
) -> list[dict[str, Any]]:
    """The messages the tick at ``now`` read, in the order they arrived.

    An answer lists the sections and fields understood and the sections found empty, each
    with its key and the workflow's first heading for it.
    """
    headings = {
        (w.name, h.key): h.names[0] for w in workflows if w.collect for h in w.collect.headings
    }
    found = []
    for kind, status, sender, workflow, respondent, data, from_name, subject in inbound.handled_at(
        db, now
    ):
        answer = json.loads(data) if data else {}

        def part(key: str) -> dict[str, str]:
            return {"key": key, "heading": headings.get((workflow, key), key)}  # noqa: B023

        sections, fields = answer.get("sections") or {}, answer.get("fields") or {}
        found.append({
            "kind": kind, "status": status, "subject": subject or "",
            "person": people.person(sender or "", from_name or ""),
            "defi": people.defis.get(respondent or "", ""),
            "understood": [part(k) for k, v in (sections | fields).items() if v],
            "empty": [part(k) for k, v in sections.items() if not v],
        })  # fmt: skip
    return found


def kind_of(workflow: str, step_id: str, steps: dict[tuple[str, str], Step]) -> str:
    """What a mail is for, from the workflow and step that wrote it."""
    step = steps.get((workflow, step_id))
    if step is not None:
        from ..programme.kinds import KINDS

        kind = KINDS.get(step.action)
        return kind.role(step) if kind is not None else "other"
    if workflow == "system":
        return "failure_notice" if step_id == "failures" else "notice"
    prefixes = (("ack", "receipt"), ("resend", "resend"), ("reply", "command_reply"),
                (Change.CHANGED, "event_change"), (Change.CANCELLED, "event_change"))  # fmt: skip
    return next((kind for prefix, kind in prefixes if step_id.startswith(prefix)), "other")


# What the server's answer for an address of a mail says of it, for the narration.
_BUCKETS: dict[str, str] = {
    Delivery.FAILED: "refused",
    Delivery.SUPPRESSED: "suppressed",
    Delivery.RETRY: "retry",
}


def mails(
    db: Database,
    now: dt.datetime,
    people: People,
    workflows: list[Workflow],
    tz: dt.tzinfo,
) -> list[dict[str, Any]]:
    """The mails the tick at ``now`` wrote or sent, grouped by kind, in the order written."""
    steps = {(w.name, s.id): s for w in workflows for s in w.steps}
    rows = outgoing.written_at(db, now)
    # One group per kind of mail of one workflow (a mail of no known kind: per subject).
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row_id, workflow, occurrence, step_id, to_addrs, status, subject, message_id in rows:
        kind = kind_of(workflow, step_id, steps)
        group = groups.setdefault(
            (kind, workflow, subject if kind == "other" else ""), _group(kind)
        )
        group["count"] += 1
        group["accepted"] += status == Sending.SENT
        group["unsent"] += status == Sending.FAILED
        group["waiting"] += status in (Sending.QUEUED, Sending.SENDING)
        _add_unique(group["subjects"], subject)
        group["messages"].append({"message_id": message_id, "to": json.loads(to_addrs)})
        _add_people(db, group, row_id, json.loads(to_addrs), now, people)
        if kind in ("invitation", "event_change") and occurrence.startswith("ev-"):
            group["event"] = _event(db, occurrence.removeprefix("ev-"), tz)
    return list(groups.values())


def _add_people(
    db: Database, group: dict[str, Any], row_id: int, to: list[str],
    now: dt.datetime, people: People,
) -> None:  # fmt: skip
    """A mail's recipients and défis into its group, and what the server said of each."""
    for address in to:
        person = people.person(address)
        _add_unique(group["people"], person)
        if person["defi"]:
            _add_unique(group["defis"], person["defi"])
    for address, state, failure, code in outgoing.outcomes_at(db, row_id, now):
        bucket = _BUCKETS.get(state)
        if bucket is not None:
            entry = {**people.person(address), "code": code, "failure": failure or ""}
            group[bucket].append(entry)


def _group(kind: str) -> dict[str, Any]:
    return {
        "kind": kind, "count": 0, "accepted": 0, "unsent": 0, "waiting": 0, "subjects": [],
        "people": [], "defis": [], "refused": [], "suppressed": [], "retry": [],
        "messages": [], "event": None,
    }  # fmt: skip


def _add_unique(items: list[Any], item: Any) -> None:
    if item not in items:
        items.append(item)


def _event(db: Database, event_id: str, tz: dt.tzinfo) -> dict[str, Any] | None:
    event = get_event(db, event_id)
    if event is None:
        return None
    return {"title": event.title, "starts": event.starts.astimezone(tz), "place": event.place}


def totals(groups: list[dict[str, Any]]) -> dict[str, int]:
    """The tick's mails added up: written, accepted by the server, not sent, waiting."""
    return {key: sum(g[key] for g in groups) for key in ("count", "accepted", "unsent", "waiting")}
