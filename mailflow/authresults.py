"""Whether a message really comes from its From address, per the receiving server (RFC 8601).

Only ``Authentication-Results`` headers whose authserv-id is one of the configured trusted
servers count, and of those only the topmost (the last one added, by the server nearest
to mailflow): a sender can write any header, but not above the ones our server adds. The
message is authenticated when DKIM passes for a domain aligned with the From domain, or
SPF passes for an aligned envelope sender, or DMARC passes (which implies alignment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RESULT = re.compile(r"^\s*(dkim|spf|dmarc)\s*=\s*([a-z]+)", re.I)
_PROPERTY = re.compile(r"\b(header\.d|header\.i|header\.from|smtp\.mailfrom)\s*=\s*([^\s;]+)", re.I)
_COMMENT = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "pass", "missing", "untrusted", "fail", "not_aligned", "no_trusted_server"
    detail: str = ""


def _domain(value: str) -> str:
    return value.rsplit("@", 1)[-1].strip("<>.").lower()


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment: the same domain, or one a subdomain of the other."""
    domain, from_domain = domain.lower(), from_domain.lower()
    return bool(domain) and (
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
    chosen = next((h for h in headers if _authserv(h) in trusted_ids), None)
    if chosen is None:
        names = ", ".join(sorted({_authserv(h) for h in headers}))
        return Verdict(False, "untrusted", f"Authentication-Results only from {names}")
    from_domain = _domain(from_address)
    seen = []
    for resinfo in _COMMENT.sub("", chosen).split(";")[1:]:
        found = _RESULT.match(resinfo)
        if not found:
            continue
        method, result = found.group(1).lower(), found.group(2).lower()
        properties = {k.lower(): _domain(v) for k, v in _PROPERTY.findall(resinfo)}
        seen.append(f"{method}={result}")
        if result != "pass":
            continue
        if method == "dmarc":
            return Verdict(True, "pass", "dmarc=pass")
        domain = properties.get("header.d") or properties.get("header.i", "")
        if method == "spf":
            domain = properties.get("smtp.mailfrom", "")
        if aligned(domain, from_domain):
            return Verdict(True, "pass", f"{method}=pass for {domain}")
        seen[-1] += f" for {domain or '?'}, not {from_domain}"
    if any(s.endswith("=pass") or "=pass for" in s for s in seen):
        return Verdict(False, "not_aligned", "; ".join(seen))
    return Verdict(False, "fail", "; ".join(seen) or "no dkim, spf or dmarc result")


def _authserv(header: str) -> str:
    head = _COMMENT.sub("", header).split(";", 1)[0].strip()
    return head.split()[0].lower() if head else ""
