"""Message-IDs that tie a reply back to the mail it answers, and cannot be forged.

A Message-ID mailflow sends reads ``<workflow.occurrence.step.recipient.mac@domain>``;
the MAC is an HMAC-SHA256 of the four fields under the programme's secret, so a reply
naming it in In-Reply-To or References is known to answer that mail, and a made-up one
is recognised as such. The secret comes from the environment (``[security] secret_env``)
or, failing that, is generated once and kept in the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from ..store import schedule
from ..store.db import Database

_PART = r"[A-Za-z0-9_-]+"
_TOKEN = re.compile(rf"^<({_PART})\.({_PART})\.({_PART})\.({_PART})\.([a-z2-7]{{20}})@([^<>\s]+)>$")


@dataclass(frozen=True)
class Token:
    """What a mail was: which workflow, occurrence, step, and for whom."""

    workflow: str
    occurrence: str
    step: str
    recipient: str


def _mac(secret: str, token: Token) -> str:
    payload = "|".join((token.workflow, token.occurrence, token.step, token.recipient))
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:20]


def message_id(secret: str, token: Token, domain: str) -> str:
    for part in (token.workflow, token.occurrence, token.step, token.recipient):
        if not re.fullmatch(_PART, part):
            raise ValueError(f"{part!r} cannot go in a Message-ID")
    fields = ".".join((token.workflow, token.occurrence, token.step, token.recipient))
    return f"<{fields}.{_mac(secret, token)}@{domain}>"


def read(secret: str, value: str) -> Token | None:
    """The token of one of our Message-IDs, None for any other or a forged one."""
    match = _TOKEN.match(value.strip())
    if not match:
        return None
    token = Token(*match.groups()[:4])
    return token if hmac.compare_digest(_mac(secret, token), match.group(5)) else None


def first_token(secret: str, message_ids: tuple[str, ...]) -> Token | None:
    """The first valid token among the Message-IDs a reply names (nearest first)."""
    for value in message_ids:
        token = read(secret, value)
        if token is not None:
            return token
    return None


def secret_for(db: Database, configured: str | None) -> str:
    """The configured secret, else the one generated for this database on first use."""
    if configured:
        return configured
    stored = schedule.setting(db, "token_secret")
    if stored:
        return stored
    schedule.set_setting(db, "token_secret", secrets.token_urlsafe(32), keep=True)
    return str(schedule.setting(db, "token_secret"))
