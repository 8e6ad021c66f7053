"""mailflow's own DKIM check (RFC 6376, with dkimpy) of a command's raw bytes.

It does not depend on how the receiving server is set up. A message passes when one of its
signatures verifies against the key published in DNS, is by a domain aligned with the
From domain, signs the From and Subject fields, and covers the whole body (no ``l=``,
which would let anyone append text). A message with two From, Subject or other
single fields fails: a signature covers only one of each, and a reader may show the
other. The passing signature's ``b=`` is the command's replay key: the same signed bytes
sent again are the same command. DNS lookups go through ``resolver``: the system's
resolvers, or the server ``[security] dns_server`` names (tests: a loopback stub).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import dkim
import dns.exception
import dns.resolver

TxtLookup = Callable[..., bytes | None]

# Fields a message has at most once (RFC 5322 3.6): a second one is a forgery's mark.
SINGLE_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"subject", b"date",
                 b"message-id", b"in-reply-to", b"references", b"mime-version",
                 b"content-type", b"content-transfer-encoding")  # fmt: skip
MUST_SIGN = (b"from", b"subject")
DNS_TIMEOUT = 5
_quiet = logging.getLogger("mailflow.dkim")


@dataclass(frozen=True)
class DkimVerdict:
    ok: bool
    reason: str  # pass, dkim_none, dkim_fail, not_aligned, dkim_temperror
    detail: str
    domain: str = ""
    signature: str = ""  # of the passing signature: see ``replay_key``


class _Lookup:
    """A TXT lookup that remembers whether DNS failed (rather than said the key is absent)."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self.resolver = resolver
        self.failed: list[str] = []

    def __call__(self, name: bytes | str, timeout: int = DNS_TIMEOUT) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        try:
            answer = self.resolver.resolve(
                text, "TXT", lifetime=timeout, raise_on_no_answer=False, search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers) as e:
            if isinstance(e, dns.resolver.NoNameservers):
                self.failed.append(f"{text}: {type(e).__name__}")
            return None
        except dns.exception.DNSException as e:
            self.failed.append(f"{text}: {type(e).__name__}")
            return None
        for record in answer:
            return b"".join(record.strings)
        return None


def resolver(dns_server: str = "") -> dns.resolver.Resolver:
    """The system's resolvers, or the one server ``dns_server`` names (see ``dns_address``)."""
    if not dns_server:
        return dns.resolver.Resolver()
    host, port = dns_address(dns_server)
    found = dns.resolver.Resolver(configure=False)
    found.nameservers = [host]
    found.port = port
    return found


def dns_address(text: str) -> tuple[str, int]:
    """``192.0.2.1``, ``192.0.2.1:5353``, ``::1`` or ``[::1]:5353`` as (address, port);
    ``ValueError`` for anything else (a DNS server is named by its address)."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53" if not rest else "x"
    elif text.count(":") == 1:
        host, port = text.split(":")
    ipaddress.ip_address(host)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a port: {port!r}")
    return host, int(port)


def verify(raw: bytes, from_domain: str, dns_resolver: dns.resolver.Resolver) -> DkimVerdict:
    """Judge ``raw`` (the bytes as stored) by its own DKIM signatures."""
    try:
        message = dkim.DKIM(raw, logger=_quiet, minkey=1024, timeout=DNS_TIMEOUT)
    except dkim.DKIMException as e:
        return DkimVerdict(False, "dkim_fail", f"the message cannot be read for DKIM ({e})")
    count = sum(1 for name, _ in message.headers if name.lower() == b"dkim-signature")
    if not count:
        return DkimVerdict(False, "dkim_none", "no DKIM-Signature")
    twice = [n.decode() for n in SINGLE_FIELDS if _times(message, n) > 1]
    if twice:
        return DkimVerdict(False, "dkim_fail", f"the header has more than one {twice[0]} field")
    lookup = _Lookup(dns_resolver)
    seen = []
    for index in range(count):
        found = _one(message, index, from_domain, lookup)
        if isinstance(found, DkimVerdict):
            return found
        seen.append(found)
    if lookup.failed and not any("not aligned" in s for s in seen):
        return DkimVerdict(False, "dkim_temperror", f"DNS failed for {lookup.failed[0]}")
    reason = "not_aligned" if all(s.endswith("not aligned") for s in seen) else "dkim_fail"
    return DkimVerdict(False, reason, "; ".join(seen))


def _one(message: dkim.DKIM, index: int, from_domain: str, lookup: _Lookup) -> DkimVerdict | str:
    """The verdict when signature ``index`` passes, else why it does not."""
    try:
        ok = message.verify(idx=index, dnsfunc=lookup)
    except dkim.DKIMException as e:
        return f"signature {index + 1}: {e}"
    domain = (message.domain or b"?").decode(errors="replace").lower()
    fields = message.signature_fields
    if not ok:
        return f"signature by {domain} does not verify (key missing, or bytes changed)"
    if b"l" in fields:
        return f"signature by {domain} covers only the first {fields[b'l'].decode()} bytes"
    unsigned = [h.decode() for h in MUST_SIGN if h not in message.include_headers]
    if unsigned:
        return f"signature by {domain} does not sign {', '.join(unsigned)}"
    if not _aligned(domain, from_domain):
        return f"signature by {domain}, not {from_domain}: not aligned"
    return DkimVerdict(True, "pass", f"dkim=pass for {domain}", domain, replay_key([fields[b"b"]]))


def replay_key(signatures: list[bytes]) -> str:
    """The same for the same signatures (their ``b=`` values), whatever their folding."""
    values = sorted(re.sub(rb"\s+", b"", s) for s in signatures)
    return hashlib.sha256(b"\n".join(values)).hexdigest() if values else ""


def signatures(raw: bytes) -> list[bytes]:
    """The ``b=`` of every DKIM-Signature of a message (for its replay key)."""
    try:
        message = dkim.DKIM(raw, logger=_quiet)
    except dkim.DKIMException:
        return []
    found = []
    for name, value in message.headers:
        if name.lower() == b"dkim-signature":
            tag = re.search(rb"(?:^|;)\s*b\s*=([^;]*)", value)
            if tag:
                found.append(tag.group(1))
    return found


def _times(message: dkim.DKIM, field: bytes) -> int:
    return sum(1 for name, _ in message.headers if name.lower() == field)


def _aligned(domain: str, from_domain: str) -> bool:
    from .authresults import aligned

    return aligned(domain, from_domain)
