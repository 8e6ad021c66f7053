"""What a failed connection to a mail server means, said so that it can be fixed.

A port answered by the other protocol, TLS spoken to a plain port (or the reverse), a
certificate the system does not trust: each is named as such, with the setting to change,
instead of a raw greeting or an OpenSSL reason code.
"""

from __future__ import annotations

import re
import ssl

# The greetings that give the other protocol away, as the client's error quotes them: an
# IMAP server opens with "* OK [CAPABILITY IMAP4rev1 …" (smtplib cuts the "* OK" off as if
# it were a reply code), an SMTP server with "220 host ESMTP".
_GREETINGS = {
    "IMAP": re.compile(r"\*\s*(ok|preauth|bye)\b|\bimap4(rev1)?\b", re.I),
    "SMTP": re.compile(r"\b220[ -].*smtp", re.I),
}


def explain(protocol: str, error: BaseException, security: str, section: str) -> str:
    """One line saying what went wrong connecting over ``protocol`` and what to check."""
    text = str(error)
    other = "SMTP" if protocol == "IMAP" else "IMAP"
    if _speaks(other, text):
        return (
            f"this port answers as an {other} server, not {protocol}: "
            f"check [{section}] port (and that it is not the {other} port)"
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or "not trusted"
        return (
            f"the server's certificate is refused ({reason}): check [{section}] host, or give "
            f"the CA that signed it with [{section}] ca_file"
        )
    if isinstance(error, ssl.SSLError) and "WRONG_VERSION_NUMBER" in text:
        return (
            f"the server does not speak TLS on this port: use the TLS port, or set "
            f'[{section}] security = "starttls" (or "none" on a trusted network)'
        )
    if isinstance(error, TimeoutError) or "timed out" in text:
        return f"no answer in time: check [{section}] host and port, and the firewall"
    if isinstance(error, ConnectionRefusedError):
        return f"nothing listens there: check [{section}] host and port"
    if security == "none" and "STARTTLS" in text.upper():
        return f'the server requires TLS: set [{section}] security = "starttls" or "tls"'
    return f"cannot connect ({type(error).__name__}: {text})"


def _speaks(protocol: str, text: str) -> bool:
    return bool(_GREETINGS[protocol].search(text))
