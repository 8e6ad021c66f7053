"""Whether a message really comes from its From address, per the receiving server (RFC 8601)
and, with ``[security] verify_dkim``, per mailflow's own DKIM check (``dkimcheck``).

Only ``Authentication-Results`` headers whose authserv-id is one of the configured trusted
servers count, and of those only the topmost (the last one added, by the server nearest
to mailflow): a sender can write any header, but not above the ones our server adds. The
message is authenticated when DKIM passes for a domain aligned with the From domain, or
SPF passes for an aligned envelope sender, or DMARC passes for the From domain.

``authorise`` decides for a command. With ``verify_dkim``, mailflow's own check passing is
enough; otherwise the trusted header decides, except that its ``dkim=pass`` is not
believed when mailflow finds no such signature (a forged header, when the server in
front of the mailbox adds none of its own). Either way the verdict carries the replay key
of the message's DKIM signatures, so that a signed command sent again is not obeyed again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Security

_RESULT = re.compile(r"^\s*(dkim|spf|dmarc)\s*=\s*([a-z]+)", re.I)
_KEYWORD = r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_TOKEN = r'[^\s()<>@,;:\\"/\[\]?=]+'  # RFC 2045: an encoded word's "=" and "?" are not in it
_PVALUE = rf'(?:{_QUOTED}[^\s";()]*|[^\s";()]+)'
_AUTHSERV = re.compile(rf"^\s*(?:{_TOKEN}|{_QUOTED})(?:\s+\d+)?\s*$")
# method[/version]=result, then reason=… and ptype.property=… (and, as Exchange writes,
# other keyword=value pairs such as "action=none").
_RESINFO = re.compile(
    rf"^\s*{_KEYWORD}(?:\s*/\s*\d+)?\s*=\s*{_KEYWORD}"
    rf"(?:\s+{_KEYWORD}(?:\.{_KEYWORD})?\s*=\s*{_PVALUE})*\s*$"
)
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?")
_PROPERTY = re.compile(
    r"(?:^|\s)(header\.d|header\.i|header\.from|smtp\.mailfrom)\s*=\s*(\"[^\"]*\"\S*|[^\s;]+)", re.I
)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    # "pass", "missing", "untrusted", "fail", "not_aligned", "no_trusted_server", and from
    # mailflow's own check "dkim_none", "dkim_fail", "dkim_temperror", "dkim_contradicted"
    reason: str
    detail: str = ""
    signature: str = ""  # replay key of the message's DKIM signatures ("" without any)


def _domain(value: str) -> str:
    return value.rsplit("@", 1)[-1].strip("<>.").lower()


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment: the same domain, or one a subdomain of the other.

    A bare top-level domain (``d=fr``) never aligns: nobody signs for a whole TLD.
    """
    domain, from_domain = domain.lower(), from_domain.lower()
    return "." in domain and (
        domain == from_domain
        or from_domain.endswith("." + domain)
        or domain.endswith("." + from_domain)
    )


def check(headers: tuple[str, ...], from_address: str, trusted: tuple[str, ...]) -> Verdict:
    """Judge a message by its Authentication-Results headers (in header order, top first)."""
    if not trusted:
        return Verdict(False, "no_trusted_server", "[security] trusted_authserv_ids is empty")
    if not headers:
        return Verdict(False, "missing", "no Authentication-Results header")
    trusted_ids = {t.lower() for t in trusted}
    headers = tuple(h for h in headers if well_formed(h))
    if not headers:
        return Verdict(False, "missing", "no Authentication-Results header that parses")
    chosen = next((h for h in headers if _authserv(h) in trusted_ids), None)
    if chosen is None:
        names = ", ".join(sorted({_authserv(h) for h in headers}))
        return Verdict(False, "untrusted", f"Authentication-Results only from {names}")
    from_domain = _domain(from_address)
    seen = []
    for resinfo in _split(chosen)[1:]:
        found = _RESULT.match(resinfo)
        if not found:
            continue
        method, result = found.group(1).lower(), found.group(2).lower()
        properties = {k.lower(): _domain(v) for k, v in _PROPERTY.findall(resinfo)}
        seen.append(f"{method}={result}")
        if result != "pass":
            continue
        if method == "dmarc":
            domain = properties.get("header.from", "")
        elif method == "spf":
            domain = properties.get("smtp.mailfrom", "")
        else:
            domain = properties.get("header.d") or properties.get("header.i", "")
        if aligned(domain, from_domain):
            return Verdict(True, "pass", f"{method}=pass for {domain}")
        seen[-1] += f" for {domain or '?'}, not {from_domain}"
    if any(s.endswith("=pass") or "=pass for" in s for s in seen):
        return Verdict(False, "not_aligned", "; ".join(seen))
    return Verdict(False, "fail", "; ".join(seen) or "no dkim, spf or dmarc result")


def authorise(
    headers: tuple[str, ...], from_address: str, security: Security, raw: bytes | None
) -> Verdict:
    """Whether a command really comes from ``from_address`` (see the module's docstring)."""
    from . import dkimcheck  # dkimpy and dnspython: only where a command is judged

    told = check(headers, from_address, security.trusted_authserv_ids)
    if not security.verify_dkim:
        key = dkimcheck.replay_key(dkimcheck.signatures(raw)) if raw else ""
        return replace(told, signature=key)
    own = dkimcheck.verify(
        raw or b"", _domain(from_address), dkimcheck.resolver(security.dns_server)
    )
    if own.ok:
        return Verdict(True, "pass", f"{own.detail} (checked by mailflow)", own.signature)
    if told.ok and told.detail.startswith("dkim=") and own.reason != "dkim_temperror":
        return Verdict(
            False, "dkim_contradicted",
            f"the receiving server's header says {told.detail}, mailflow finds {own.detail}",
        )  # fmt: skip
    if told.ok:
        return replace(told, signature=dkimcheck.replay_key(dkimcheck.signatures(raw or b"")))
    return Verdict(False, own.reason, f"{own.detail}; {told.detail}")


def well_formed(header: str) -> bool:
    """Whether a raw header value parses as RFC 8601's ``authres-payload``."""
    if _ENCODED_WORD.search(header):
        return False
    parts = _split(header)
    if not _AUTHSERV.match(parts[0]):
        return False
    results = [p for p in parts[1:] if p.strip()]
    if len(results) == 1 and results[0].strip().lower() == "none":
        return True
    return all(_RESINFO.match(p) for p in results)


def _split(header: str) -> list[str]:
    """The header's parts between semicolons, ignoring those inside quoted strings and
    (nested) comments, comments removed: a sender-chosen ``smtp.mailfrom="x;dkim=pass"``
    stays one value."""
    parts, current = [], []
    depth, quoted, escaped = 0, False, False
    for ch in header:
        if escaped:
            escaped = False
            if depth == 0:
                current.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                current.append(ch)
        elif quoted:
            current.append(ch)
            quoted = ch != '"'
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth:
            continue
        elif ch == '"':
            quoted = True
            current.append(ch)
        elif ch == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def authserv_id(header: str) -> str:
    """The server that wrote an Authentication-Results header (its first word, lower case)."""
    return _authserv(header)


def _authserv(header: str) -> str:
    head = _split(header)[0].strip()
    return head.split()[0].lower() if head else ""
