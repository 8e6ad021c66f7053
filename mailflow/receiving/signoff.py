"""Sign-offs at the end of what a person wrote: closing formulas, names, signature blocks.

What ends a reply and is not content: a closing formula in French or English
("Cordialement,", "Merci et bon week-end !", "Best regards"), alone or followed by a
name and a title on the same line ("Cordialement, Olivier Marchand, HAS – DSI"); a
closing sentence ("N'hésitez pas si besoin", "Let me know if you have questions"); a
name or initials alone on the last line ("Julien", "Raph", "J.-F. M."); and a signature
block without the ``-- `` delimiter (a name, then a title, an organisation, a phone
number, an address). ``tail_cut`` finds where such an ending starts; content above it
is never touched: a bullet, a heading and the lines under it are not sign-offs.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

from .sections import normalize

_CLOSING_PHRASE = (
    r"(?:(?:bien |tr[èe]s |tr[eè]s bien |bien (?:[àa] )?)?"
    r"(?:cordialement|amicalement|sinc[èe]rement)"
    r"|cdl?t|bav|b[àa]v|salutations(?: distingu[ée]es)?|bien [àa] (?:vous|toi|tous|toutes)"
    r"|[àa] (?:tr[èe]s )?bient[ôo]t|[àa] plus|a\+|[àa] (?:vendredi|lundi|la semaine prochaine"
    r"|tout [àa] l'heure|suivre|la prochaine)|bises|biz|bisous|amiti[ée]s|belles? salutations"
    r"|(?:(?:tr[èe]s )?(?:belle|bonne)|bon|excellente?) (?:journ[ée]e|soir[ée]e|semaine|week-?end"
    r"|fin de (?:journ[ée]e|semaine)|continuation|lecture|vendredi|courage|apr[èe]s-midi"
    r"|vacances|f[êe]tes)"
    r"|je vous (?:souhaite|remercie)[^,.!]{0,40}|merci(?: beaucoup| bien| encore| mille fois"
    r"| d'avance| par avance| [àa] (?:vous|tous|toi|toutes)| pour tout)*"
    r"|(?:best|kind|warm|warmest|many)? ?regards|best(?: wishes)?|cheers|all the best"
    r"|thanks?(?: you)?(?: (?:a lot|again|so much|in advance))?|many thanks"
    r"|(?:have|enjoy) (?:a )?(?:nice|great|good|lovely) (?:day|week-?end|weekend|evening)"
    r"|(?:have|enjoy) your week-?end|talk soon|speak soon|take care|see you(?: soon| next week)?)"
)
_TO_ALL = (
    r"(?: [àa] (?:vous|tous|toutes|toi|toutes et [àa] tous|tous et [àa] toutes|tout le monde"
    r"|toute l'[ée]quipe|toute la promo(?:tion)?|toute la cohorte)| all| everyone| to all)?"
)
_PUNCT = r"(?:[,.!…]|:\)|;\)|[\U0001f300-\U0001faff\u2600-\u27bf]\ufe0f?)"
# One or more closing phrases ("Merci et bon week-end à tous"), then punctuation.
_CLOSING = re.compile(
    rf"^[-–—\s]*{_CLOSING_PHRASE}{_TO_ALL}(?:\s*(?:,|et|and|&|\+)\s*{_CLOSING_PHRASE}{_TO_ALL})*"
    rf"\s*(?P<rest>{_PUNCT}+\s*.*)?$",
    re.I,
)
# After a closing and its punctuation, only a signature may follow on the line: a name
# (capitalised words or initials), then anything (title, organisation) after a separator.
_NAME_WORD = r"(?:[A-ZÀ-Ý][\w'’.-]*|[A-ZÀ-Ý]{1,3}\.?)"
_SIGNATURE_REST = re.compile(rf"^\s*{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,3}}\s*(?:[,|–—/-].*)?$")
_CLOSING_SENTENCE = re.compile(
    r"^[-–—\s]*(?:n'h[ée]sitez pas|n'h[ée]site pas|je reste (?:[àa] (?:votre|ta) )?disposition"
    r"|nous restons [àa] (?:votre|ta) disposition|je suis disponible si"
    r"|merci (?:d'avance |par avance |encore |beaucoup )?(?:pour|de) (?:votre|ton|vos|tes|la|le)"
    r" (?:aide|retour|soutien|lecture|attention|temps|patience|organisation|relance)"
    r"|let me know if|feel free to|don't hesitate to|do not hesitate to|happy to (?:help|chat)"
    r"|thanks? (?:you )?(?:in advance )?for (?:your|the) (?:help|support|time|patience|reading))"
    r"[^\n]{0,120}$",
    re.I,
)
# Any language's sign-off has the same shape: one to three words and a comma, near the end.
_SIGN_OFF_SHAPE = re.compile(r"^[-–—\s]*[^\W\d_][\w'’-]*(?:\s[\w'’-]+){0,2}\s*,\s*$")
# A name alone: one to three capitalised words ("Jean-François", "de La Tour") or initials.
_NAME_LINE = re.compile(
    r"^[-–—\s]*(?:[A-ZÀ-Ý][a-zà-ÿ'’]+(?:-[A-ZÀ-Ý]?[a-zà-ÿ'’]+)*"
    r"(?:\s+(?:(?:de|du|des|le|la|van|von|d')\s*)?[A-ZÀ-Ý][\w'’-]*\.?){0,2}"
    r"|[A-ZÀ-Ý](?:\.?-?[A-ZÀ-Ý]){0,3}\.?(?:\s+[A-ZÀ-Ý][\w'’-]*\.?)?)\s*[.!]?\s*$"
)
_PHONE = re.compile(r"(?:\+\d{2}\s?\(?0?\)?|\b0)\s?[1-9](?:[\s.-]?\d{2}){4}\b|\+\d[\d\s.-]{8,}\d")
_CONTACT = re.compile(
    r"@[\w-]+\.|https?://|www\.|\b(?:t[ée]l|tel|mob|phone|fax|port)\b\.?\s*:?", re.I
)
# A whole message that only thanks or agrees: "Merci, c'est parfait !", "OK 👍", "Noted".
_THANKS = re.compile(
    r"^(?:merci|thanks?|thank you|many thanks|bien (?:not[ée]|re[çc]u)|c'est not[ée]|not[ée]"
    r"|noted|got it|received|ok|okay|d'accord|parfait|perfect)\b(?P<rest>.{0,60})$"
    r"|^(?:super|top|cool|g[ée]nial|nickel|great|excellent|yes|oui)?[\W_]*$",
    re.I,
)
# What turns a thank-you into news: "Merci ! Petite correction : …".
_NEWS = re.compile(
    r"correct|en fait|finalement|\bmais\b|\bbut\b|actually|update|oubli|forgot", re.I
)
_BULLET = re.compile(r"^\s*(?:[-*•·‣◦▪►–—+]|\d{1,2}[.)])\s")


def _plain(line: str) -> str:
    return normalize("".join(ch for ch in line if unicodedata.category(ch)[0] in "LNZP"))


@functools.lru_cache(maxsize=256)
def name_variants(name: str) -> frozenset[str]:
    """How a person signs: the whole name, each part, first name and initial, initials."""
    name = re.sub(r"[\"'()]", "", name).strip()
    name = re.sub(r"\s+(?:via|de la part de)\s.*$", "", name, flags=re.I)
    if not name or "@" in name:
        return frozenset()
    words = [w for w in re.split(r"[\s,]+", name) if w]
    variants = {name, *(w for w in words if len(w) > 1)}
    if len(words) > 1:
        first, last = words[0], words[-1]
        variants |= {f"{first} {last[0]}.", f"{first} {last[0]}", f"{last} {first}"}
        variants |= {f"{last[0]}{first[0]}", f"{first[0]}{last[0]}", f"{first[0]}.{last[0]}."}
    return frozenset(normalize(v) for v in variants)


def _is_name(line: str, names: frozenset[str]) -> bool:
    plain = _plain(line).strip(" -,.!")
    if not plain or len(plain) > 40:
        return False
    if plain in names:
        return True
    # "Raph" for Raphaël, "Max" for Maxime: a first name cut short.
    return (
        len(plain) >= 3
        and " " not in plain
        and any(n.startswith(plain) and " " not in n for n in names)
    )


def tail_cut(
    lines: list[str],
    is_heading: Callable[[str], bool],
    sender_name: str,
    last_heading: int | None = None,
) -> int | None:
    """Where the sign-off at the end of ``lines`` starts, or None when there is none.

    ``last_heading``: the index of the last heading line, when the caller knows it.
    """
    nonempty = [i for i, line in enumerate(lines) if line.strip()]
    if not nonempty:
        return None
    names = name_variants(sender_name)
    if last_heading is None:
        last_heading = max((i for i in nonempty if is_heading(lines[i])), default=-1)
    for i in nonempty[-8:]:
        if i <= last_heading:
            continue
        found = _sign_off_at(lines, i, nonempty, names, is_heading)
        if found:
            return i
    return None


def _sign_off_at(
    lines: list[str],
    i: int,
    nonempty: list[int],
    names: frozenset[str],
    is_heading: Callable[[str], bool],
) -> bool:
    stripped = lines[i].strip()
    rest = [lines[j].strip() for j in nonempty if j > i]
    if any(is_heading(r) or len(r) > 90 for r in rest):
        return False
    first = i == nonempty[0]
    after_heading = _after_heading(lines, i, nonempty, is_heading)
    closing = _CLOSING.match(stripped)
    if closing and len(rest) <= 7:
        tail = closing.group("rest") or ""
        words = re.sub(rf"^{_PUNCT}+\s*", "", tail)
        if not words or _SIGNATURE_REST.match(words) or _is_name(words.split(",")[0], names):
            return True
    if _CLOSING_SENTENCE.match(stripped) and len(rest) <= 4 and not after_heading:
        return all(_CLOSING.match(r) or _is_name(r, names) or _NAME_LINE.match(r) for r in rest)
    if _BULLET.match(stripped) or after_heading:
        return False
    if _is_name(stripped, names) and _signature_block(rest, allow_plain=True):
        return True
    # Not the first line: "Bonjour," has the same shape and opens the message.
    if i in nonempty[-4:] and not first and _SIGN_OFF_SHAPE.match(stripped):
        return len(rest) <= 3 and all(len(r) <= 40 for r in rest)
    own_paragraph = i > 0 and not lines[i - 1].strip()
    if own_paragraph and _NAME_LINE.match(stripped) and not first:
        return not rest or _signature_block(rest, allow_plain=False)
    return False


def _after_heading(
    lines: list[str], i: int, nonempty: list[int], is_heading: Callable[[str], bool]
) -> bool:
    """Whether the line is the first under a heading: an answer, never a sign-off."""
    k = nonempty.index(i)
    if k == 0:
        return False
    above = lines[nonempty[k - 1]]
    # "Besoins : un accès VPN" holds its answer: what follows it may be a sign-off.
    return is_heading(above) and not re.search(r"[:：]\s*\S", above)


def _signature_block(rest: list[str], *, allow_plain: bool) -> bool:
    """Lines under a name that make a signature: a title, an organisation, contacts."""
    if len(rest) > 6 or any(_BULLET.match(r) for r in rest):
        return False
    if any(_PHONE.search(r) or _CONTACT.search(r) for r in rest):
        return True
    return allow_plain and len(rest) <= 4 and all(len(r) <= 70 for r in rest)


def is_thanks(text: str) -> bool:
    """Whether a short text only thanks, acknowledges or agrees (a reply to a receipt)."""
    plain = " ".join(text.split())
    found = _THANKS.match(plain)
    return found is not None and not _NEWS.search(found.group("rest") or "")
