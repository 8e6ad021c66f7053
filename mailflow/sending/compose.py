"""The composer: the one path every outgoing mail takes, from a template to an outbox row.

``Mailer.compose`` renders a template in a language, signs the mail's token into its
Message-ID, sets the threading headers, builds the MIME message dated in the programme's
time zone, and returns the ``Outgoing`` row whose key names the mail (workflow,
occurrence, step, recipient), so that queuing it twice is a no-op.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..store.outgoing import Outgoing
from . import tokens
from .render import Attachment, Renderer

if TYPE_CHECKING:
    from ..config import Config


@dataclass(frozen=True)
class Mailer:
    """Composes mail for one configured programme."""

    config: Config
    renderer: Renderer
    secret: str

    def compose(
        self,
        token: tokens.Token,
        to: tuple[str, ...] | list[str],
        template: str,
        language: str,
        context: dict[str, Any],
        now: dt.datetime,
        *,
        reply_to: str | None = None,
        attachments: tuple[Attachment, ...] = (),
        thread: tuple[str, ...] = (),
        original: bytes | None = None,
        key: str | None = None,
    ) -> Outgoing:
        """One mail, rendered and keyed; raises ``TemplateError`` before anything is queued.

        ``reply_to`` defaults to the mailbox mailflow reads; ``thread`` (the Message-IDs it
        answers, oldest first) sets In-Reply-To and References; ``original`` sends that
        mail's body again under the rendered subject (a resend is what was sent). ``key``
        overrides the outbox key when one token names mails to several addresses.
        """
        from .message import build_message, rewrap  # the MIME classes: only to write mail

        rendered = self.renderer.render(template, language, context)
        addresses = self.config.addresses
        message_id = tokens.message_id(self.secret, token, addresses.message_id_domain)
        date = now.astimezone(self.config.timezone)
        if original is not None:
            raw = rewrap(original, subject=rendered.subject, to=list(to), message_id=message_id,
                         date=date)  # fmt: skip
        else:
            headers = (
                (("In-Reply-To", thread[-1]), ("References", " ".join(thread))) if thread else ()
            )
            raw = build_message(
                rendered, sender=addresses.sender, sender_name=addresses.sender_name, to=list(to),
                reply_to=reply_to or addresses.reply_to, message_id=message_id, date=date,
                attachments=attachments, headers=headers,
            )  # fmt: skip
        return Outgoing(
            key or ":".join((token.workflow, token.occurrence, token.step, token.recipient)),
            token.workflow, token.occurrence, token.step, token.recipient, tuple(to),
            addresses.sender, message_id, rendered.subject, raw,
        )  # fmt: skip

    def staff(self, db: Any) -> tuple[str, ...]:
        """Where mail to the staff goes: each staff member, or the alias when there is none."""
        from ..store import people

        return tuple(people.staff_addresses(db)) or (self.config.addresses.alias,)
