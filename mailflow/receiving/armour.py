"""Inline PGP clear-signed text (RFC 4880 §7) read as the person wrote it.

The armour lines ("-----BEGIN PGP SIGNED MESSAGE-----", its ``Hash:`` header lines, the
signature block) are removed and dash-escaping undone (``- -- `` back to ``-- ``,
``- - item`` back to ``- item``). Quoted lines are left alone: an armour quoted from an
earlier mail is history, removed with it.
"""

from __future__ import annotations

import re

_BEGIN = "-----BEGIN PGP SIGNED MESSAGE-----"
_SIGNATURE = re.compile(r"^-----BEGIN PGP SIGNATURE-----\s*$")
_END = re.compile(r"^-----END PGP SIGNATURE-----\s*$")
_ARMOUR_HEADER = re.compile(r"^(Hash|Charset|Comment|Version)\s*:", re.I)


def strip_armour(text: str) -> str:
    """``text`` without inline PGP armour; unchanged when it has none."""
    if _BEGIN not in text:
        return text
    out: list[str] = []
    state = "outside"  # outside → header → signed → signature → outside
    for line in text.split("\n"):
        bare = line.rstrip()
        if state == "outside":
            if bare == _BEGIN:
                state = "header"
            else:
                out.append(line)
        elif state == "header":
            if not bare:
                state = "signed"
            elif not _ARMOUR_HEADER.match(bare):  # no blank line after the headers
                state = "signed"
                out.append(line)
        elif state == "signed":
            if _SIGNATURE.match(bare):
                state = "signature"
            else:
                out.append(line[2:] if line.startswith("- ") else line)
        elif _END.match(bare):
            state = "outside"
    return "\n".join(out)
