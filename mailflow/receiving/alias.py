"""The staff alias: commands by mail, help requests, and staff replies that settle them.

Mail to the alias (or from the staff to the shared mailbox) is taken, in this order, for:

- a **command**, when its subject starts with a command keyword: obeyed only when the
  sender is on the staff list and the trusted receiving server's Authentication-Results
  shows DKIM, SPF or DMARC passing for the From domain, or (``[security] verify_dkim``)
  mailflow's own DKIM check passes (``authresults.authorise``); a signed command already
  obeyed is not obeyed again when its bytes come back (a replay). Obeyed, the sender gets a
  confirmation saying what was done, or an error saying what was wrong; refused, it is
  stored, not executed, and the staff are told. Every command is logged (``commands``).
- a **staff reply** that answers a help request (by In-Reply-To/References), which
  takes that request off the staff's reminder list;
- a **help request**, when anyone else writes to the alias: kept until a staff member
  answers (or a "handled" command), and listed in the staff's daily reminder meanwhile.

Automatic mail (out-of-office, bounces) never gets an answer: no mail loops.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from ..programme.workflow import Workflow
from ..sending import tokens
from ..sending.compose import Mailer
from ..store import commandlog, desk, people
from ..store.db import Database
from ..store.outgoing import Outgoing
from ..store.states import Respondent
from . import authresults
from .commands import (
    Command,
    Executor,
    Outcome,
    Request,
    Vocabulary,
    parse_command,
)
from .parse import ParsedMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handled:
    """What a message to the alias is, and what to do about it inside its transaction."""

    kind: str  # command, help, staff_reply
    status: str
    act: Callable[[Database], list[Outgoing]]


class Desk:
    """The alias, bound to a configured mailflow."""

    def __init__(
        self, mailer: Mailer, workflows: Callable[[], list[Workflow]], vocabulary: Vocabulary
    ) -> None:
        self.mailer = mailer
        self.workflows = workflows
        self.vocabulary = vocabulary

    @property
    def config(self) -> Config:
        return self.mailer.config

    @property
    def secret(self) -> str:
        return self.mailer.secret

    # -- routing -------------------------------------------------------------------------
    def handle(
        self, db: Database, message: int, parsed: ParsedMessage, now: dt.datetime
    ) -> Handled | None:
        """None for mail that is not the alias's business (answers, automatic mail)."""
        if parsed.automatic:
            return None
        sender = (parsed.from_address or "").lower()
        to_alias = self.config.addresses.alias.lower() in {
            a.lower() for a in (*parsed.to, *parsed.cc)
        }
        staff = bool(sender) and (
            people.is_staff(db, sender) or sender == self.config.addresses.sender.lower()
        )
        if not (to_alias or staff):
            return None
        token = tokens.first_token(self.secret, parsed.thread_ids)
        if token is not None and (not to_alias or token.recipient[:2] in ("d-", "s-")):
            return None  # an answer to a workflow mail, alias in copy or not: the workflow's
        command = parse_command(parsed.subject, parsed.text, self.vocabulary)
        if command is not None and to_alias and people.is_staff(db, sender):
            # Only a staff address can give a command (which its authentication must then
            # confirm): anyone else writing a keyword to the alias is asking for help.
            return self._command(db, message, parsed, command, sender, now)

        def settle(ids: list[int]) -> Callable[[Database], list[Outgoing]]:
            def act(d: Database) -> list[Outgoing]:
                desk.settle_requests(d, ids, sender, now)
                return []

            return act

        if staff:
            answered_ids = desk.waiting_requests(db, parsed.thread_ids)
            if answered_ids:
                return Handled("staff_reply", "recorded", settle(answered_ids))
            return None
        if to_alias:
            return Handled("help", "waiting", lambda d: self._help(d, message, parsed, sender, now))
        return None

    def _help(
        self,
        db: Database,
        message: int,
        parsed: ParsedMessage,
        sender: str,
        now: dt.datetime,
    ) -> list[Outgoing]:
        defis = people.defis_of(db, sender)
        respondent = Respondent.defi(defis[0]) if len(defis) == 1 else None
        desk.add_help_request(
            db, message, sender, respondent, parsed.subject, parsed.message_id, now
        )
        return []

    # -- commands -------------------------------------------------------------------------
    def _command(
        self,
        db: Database,
        message: int,
        parsed: ParsedMessage,
        command: Command,
        sender: str,
        now: dt.datetime,
    ) -> Handled:
        refusal: tuple[str, str] | None
        signature = ""
        if len(parsed.senders) != 1:
            refusal = ("several_senders", f"From names {len(parsed.senders)} addresses")
        else:
            verdict = authresults.authorise(
                parsed.authentication_results, sender, self.config.security,
                commandlog.raw_message(db, message),
            )  # fmt: skip
            refusal = None if verdict.ok else (verdict.reason, verdict.detail)
            signature = verdict.signature
            earlier = commandlog.signature_obeyed(db, signature) if signature else None
            if refusal is None and earlier is not None and earlier != message:
                refusal = ("replayed", f"the same DKIM signature as message {earlier}, obeyed")
        if refusal is not None:
            code, detail = refusal
            log.warning("command %r from %s refused: %s", command.verb, sender, detail)

            def refuse(d: Database) -> list[Outgoing]:
                self._log(d, message, sender, command, "refused", f"{code}: {detail}", now)
                earlier = self._unnotified(d, message, sender, now)
                if earlier is None:
                    return []  # the staff were told about this sender today: counted later
                mail = self._refusal_mail(d, message, parsed, command, code, detail, now, earlier)
                commandlog.mark_refusals_told(d, sender, now)
                return [mail]

            return Handled("command", "refused", refuse)

        def obey(d: Database) -> list[Outgoing]:
            request = Request(d, command, message, parsed, sender, now)
            outcome = Executor(self.mailer, self.workflows, self.vocabulary).execute(request)
            summary = json.dumps(outcome.data, default=str, ensure_ascii=False)
            status = "done" if outcome.ok else "failed"
            self._log(d, message, sender, command, status, f"{outcome.code} {summary}", now)
            if signature:
                commandlog.record_signature(d, message, signature)
            return [*outcome.mails, self._reply_mail(message, parsed, outcome, now)]

        return Handled("command", "executed", obey)

    def _log(
        self,
        db: Database,
        message: int,
        sender: str,
        command: Command,
        status: str,
        outcome: str,
        now: dt.datetime,
    ) -> None:
        arguments = json.dumps(command.arguments, ensure_ascii=False)
        commandlog.log_command(db, message, sender, command.verb, arguments, status, outcome, now)
        log.info("command %s from %s: %s (%s)", command.verb, sender, status, outcome)

    def _unnotified(self, db: Database, message: int, sender: str, now: dt.datetime) -> int | None:
        """Earlier refusals of ``sender`` the staff were not told of; None when they were
        told of one today (one notice per sender per day: a forger cannot flood them)."""
        start = dt.datetime.combine(
            now.astimezone(self.config.timezone).date(), dt.time(0), tzinfo=self.config.timezone
        )
        if commandlog.refusals_told_since(db, sender, start):
            return None
        return commandlog.untold_refusals(db, sender, message)

    # -- mail -----------------------------------------------------------------------------
    def _reply_mail(
        self, message: int, parsed: ParsedMessage, outcome: Outcome, now: dt.datetime
    ) -> Outgoing:
        context = {
            "outcome": {"verb": outcome.verb, "ok": outcome.ok, "code": outcome.code,
                        **outcome.data},
            "subject": parsed.subject,
            "vocabulary": self.vocabulary.verbs,
            "programme": {"name": self.config.addresses.sender_name,
                          "alias": self.config.addresses.alias},
        }  # fmt: skip
        sender = (parsed.from_address or "").lower()
        token = tokens.Token("alias", now.strftime("%Y%m%d"), f"reply{message}", "staff")
        return self.mailer.compose(token, [sender], "commands/reply", self.config.language,
                                   context, now, reply_to=self.config.addresses.alias)  # fmt: skip

    def _refusal_mail(
        self, db: Database, message: int, parsed: ParsedMessage, command: Command,
        code: str, detail: str, now: dt.datetime, earlier: int = 0,
    ) -> Outgoing:  # fmt: skip
        context = {
            "refusal": {
                "code": code, "detail": detail, "verb": command.verb,
                "sender": parsed.from_address or "", "subject": parsed.subject,
                "earlier": earlier,  # refused since the last notice about this sender
            },
            "programme": {"name": self.config.addresses.sender_name,
                          "alias": self.config.addresses.alias},
        }  # fmt: skip
        token = tokens.Token("alias", now.strftime("%Y%m%d"), f"refused{message}", "staff")
        return self.mailer.compose(token, self.mailer.staff(db), "commands/refused",
                                   self.config.language, context, now,
                                   reply_to=self.config.addresses.alias)  # fmt: skip
