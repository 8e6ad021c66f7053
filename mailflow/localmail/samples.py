"""Realistic French and English messages in bulk, for tests and benchmarks.

``sample_replies(n)`` gives n distinct replies (about 3 KB each, multipart, as Gmail,
Outlook, Thunderbird and iOS write them) to a retrospective request like mailflow's.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from .clients import reply

TEAMS = ["Bulletins", "Sirène", "Datafix", "Open Santé", "Géocarto", "Archipel", "LexImpact"]
FIRST = ["Camille", "Hugo", "Léa", "Mathieu", "Inès", "Théo", "Chloé", "Nicolas", "Zoé", "Amine"]
LAST = ["Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Girard", "Roux", "Fontaine"]
VICTORIES = [
    "la première version du service est en production à la DGFiP",
    "trois agents de la préfecture utilisent le prototype tous les jours",
    "la convention d'accès aux données est enfin signée",
    "démo réussie devant le comité de pilotage, avec des retours très positifs",
    "on a divisé par deux le temps d'instruction d'un dossier",
]
DIFFICULTIES = [
    "toujours pas d'accès aux données de l'INSEE",
    "le serveur de préproduction tombe une fois par jour",
    "difficile de réunir les agents métier avant les congés",
    "la recette prend plus de temps que prévu",
    "",
]
NEEDS = [
    "un contact au service juridique pour la convention de données",
    "un retour de l'équipe design sur les maquettes",
    "",
    "un coup de main pour l'homologation RGS",
    "",
]

REQUEST_TEXT = """Bonjour l'équipe {team},

Comme chaque vendredi, racontez-nous votre semaine en répondant à ce mail avant 14h30.
Écrivez sous chaque titre ; laissez vide ce qui ne vous concerne pas.

Victoires :

Difficultés :

Besoins :

Humeur (facultatif) :
Priorité de la semaine prochaine (facultatif) :
Date clé à annoncer (facultatif) :

Vos réponses seront partagées avec toute la promotion dans le mail de 15h.

{sig_dash}
Programme EIG · mailflow
"""


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return ascii_text.lower().replace(" ", "-")


def sample_request(
    team: str = "Bulletins", week: int = 48, domain: str = "programme.test"
) -> bytes:
    """A retrospective request as mailflow sends it (plain and HTML)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Programme EIG <retro@{domain}>"
    msg["To"] = f"equipe@{_slug(team)}.test"
    msg["Reply-To"] = f"retro@{domain}"
    msg["Subject"] = f"Rétrospective de la semaine {week} : vos victoires, difficultés et besoins"
    msg["Message-ID"] = f"<retro.2026-W{week}.request.{_slug(team)}.sample@{domain}>"
    msg["Date"] = format_datetime(dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC))
    msg["Auto-Submitted"] = "auto-generated"
    text = REQUEST_TEXT.format(team=team, sig_dash="-- ")
    msg.set_content(text, cte="quoted-printable")
    html = "".join(f"<p>{line}</p>" for line in text.split("\n\n"))
    msg.add_alternative(f"<html><body>{html}</body></html>", subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def sample_answer(rng: random.Random) -> str:
    lines = ["Bonjour,", "", "Victoires :", "- " + rng.choice(VICTORIES)]
    if rng.random() < 0.5:
        lines.append("- " + rng.choice(VICTORIES))
    difficulty, need = rng.choice(DIFFICULTIES), rng.choice(NEEDS)
    lines += ["", "Difficultés :", difficulty or "RAS", "", "Besoins :", need or "Rien", ""]
    lines += ["Bonne journée,", rng.choice(FIRST)]
    return "\n".join(lines)


def sample_replies(n: int, seed: int = 1) -> list[bytes]:
    """``n`` distinct realistic replies, cycling through the clients."""
    rng = random.Random(seed)
    requests = {team: sample_request(team) for team in TEAMS}
    clients = ["gmail", "outlook", "thunderbird", "iphone"]
    start = dt.datetime(2026, 11, 27, 9, 30, tzinfo=dt.UTC)
    result = []
    for i in range(n):
        team = TEAMS[i % len(TEAMS)]
        first, last = rng.choice(FIRST), rng.choice(LAST)
        sender = f"{_slug(first)}.{_slug(last)}{i}@{_slug(team)}.test"
        date = start + dt.timedelta(seconds=i)
        raw = reply(
            clients[i % 4], requests[team], sender, f"{first} {last}", sample_answer(rng), date=date
        )
        result.append(raw)
    return result
