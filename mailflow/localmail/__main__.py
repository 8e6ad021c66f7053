"""Stand-in mail servers for a trial of a site: ``python -m mailflow.localmail -c mailflow.toml``.

Starts Dovecot and the SMTP server on loopback with a mailbox for every address the config
and its roster name (all with the password ``secret``), prints the settings to put in the
config and the secrets file, and serves until Ctrl-C or SIGTERM. What they receive can be
read with any IMAP client on that port. The mail is kept under ``--dir`` (by default a
temporary folder, removed at exit). Needs Dovecot (``apt-get install dovecot-imapd
dovecot-lmtpd``) and aiosmtpd (``pip install aiosmtpd``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from ..config import Config, load_config
from ..errors import MailflowError
from . import PASSWORD, LocalMail


def addresses(config: Config) -> list[str]:
    """Every address a site writes to or reads: its own, and its roster's."""
    from ..programme.roster import load_roster

    found = [config.imap.username, config.addresses.sender, config.addresses.reply_to,
             config.addresses.alias, config.addresses.cohort]  # fmt: skip
    if config.roster is not None:
        roster = load_roster(config.roster)
        found += [a for d in roster.defis for a in d.addresses]
        found += [s.address for s in roster.staff] + [m.address for m in roster.mentors]
    return sorted({a.lower() for a in found if a})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailflow.localmail", description=__doc__)
    parser.add_argument("-c", "--config", help="the site's mailflow.toml (default: ./)")
    parser.add_argument("--dir", type=Path, help="where the mail is kept (default: temporary)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        wanted = addresses(config)
        if args.dir:
            args.dir.mkdir(parents=True, exist_ok=True)
            args.dir.chmod(0o755)  # Dovecot's own users must reach the mail under it
        mail = LocalMail(args.dir).start()
    except MailflowError as e:
        print(f"mailflow.localmail: {e}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for address in wanted:
            mail.add_user(address)
        print(
            f"IMAP on 127.0.0.1:{mail.imap_port}, SMTP on 127.0.0.1:{mail.smtp_port}, "
            f"{len(wanted)} mailboxes (password {PASSWORD!r}). In {config.path}:\n"
            f'  [imap] host = "127.0.0.1", port = {mail.imap_port}, security = "none"\n'
            f'  [smtp] host = "127.0.0.1", port = {mail.smtp_port}, security = "none", '
            'username = ""\n'
            f"and in the secrets: {config.imap.password_env}={PASSWORD}\n"
            "Serving until Ctrl-C.",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        mail.cleanup()


if __name__ == "__main__":
    sys.exit(main())
