"""Mail relayed by a mailing list: who wrote it, when the list rewrote From.

Sympa and Mailman rewrite From to the list's own address when the author's domain
publishes a strict DMARC policy ("Chloé Martin via promo <promo@listes…>"), keeping the
author in ``X-Original-From`` (Sympa), ``Reply-To`` (both) or ``Cc`` (Mailman, when
replies go to the list); Google Groups in ``X-Original-Sender``. Only a message that
carries a ``List-Id`` and whose From is the list is read this way: anyone can write
these headers, and they never override the From of an ordinary message.
"""

from __future__ import annotations

import re

from .mime import addresses, unfold

_VIA = re.compile(r"\s*[\"'(]*\s*(?:via|de la part de|through)\s.*$", re.I)
_LIST_ID = re.compile(r"<([^<>\s]+)>")
_MAILTO = re.compile(r"<mailto:([^<>?\s]+)", re.I)
# Where lists keep the author, most specific first.
_AUTHOR_HEADERS = ("x-original-from", "x-original-sender", "reply-to")


def list_addresses(raw: dict[str, list[str]]) -> set[str]:
    """The addresses of the list a message came through (empty when it has no List-Id)."""
    ids = [m.group(1).lower() for v in raw.get("list-id", []) for m in _LIST_ID.finditer(v)]
    if not ids and not raw.get("list-id"):
        return set()
    found: set[str] = set()
    for name in ("list-post", "list-help", "list-subscribe", "list-unsubscribe"):
        for value in raw.get(name, []):
            for m in _MAILTO.finditer(unfold(value)):
                found.add(m.group(1).lower())
    return found | {_id_address(i) for i in ids if _id_address(i)}


def _id_address(list_id: str) -> str:
    """``promo.listes.example`` → ``promo@listes.example``: how Sympa and Mailman name lists."""
    local, _, domain = list_id.partition(".")
    return f"{local}@{domain}" if local and "." in domain else ""


def author(
    raw: dict[str, list[str]], from_address: str | None, from_name: str
) -> tuple[str | None, str]:
    """(address, name) of the person who wrote the message: From, unless a list rewrote it."""
    if not from_address or "list-id" not in raw:
        return from_address, from_name
    lists = list_addresses(raw)
    sender = from_address.lower()
    same_list = sender in lists or _local_parts(sender, lists)
    if not same_list:
        return from_address, from_name
    plain_name = _VIA.sub("", from_name).strip(" \"'")
    candidates = [a for h in _AUTHOR_HEADERS for v in raw.get(h, []) for a in addresses(v)]
    candidates += [
        a for v in raw.get("cc", []) for a in addresses(v) if plain_name and a[0] == plain_name
    ]
    for name, address in candidates:
        if address.lower() not in lists and not _local_parts(address.lower(), lists):
            return address, name or plain_name
    return from_address, plain_name or from_name


def _local_parts(address: str, lists: set[str]) -> bool:
    """``promo-owner@…``, ``promo-bounces@…``: the list's own robots."""
    local, _, domain = address.partition("@")
    return any(
        domain == list_domain and (local == name or local.startswith(name + "-"))
        for name, _, list_domain in (a.partition("@") for a in lists)
    )
