"""Access tokens for OAuth2 logins (XOAUTH2, OAUTHBEARER) to IMAP and SMTP servers.

A token comes from the configured source (``OAuth2Config``): a command that prints one
(any provider, like mutt's and msmtp's helpers), the Microsoft identity platform with
client credentials (MSAL), or Google with a service account acting as the mailbox by
domain-wide delegation or a stored refresh token (google-auth). Tokens are kept in memory
until ``margin`` before they expire; a token the server refuses is dropped and replaced
once (``renew``). Every failure is a ``TokenError``: one line naming the source and what
to check, raised as a ``MailServerError`` so that the daemon backs off and tries again.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import GOOGLE_TOKEN_URI, MICROSOFT_AUTHORITY, OAuth2Config
from .errors import MailServerError

REFRESH_MARGIN = 300.0  # seconds before expiry when a cached token is replaced
MECHANISMS = ("OAUTHBEARER", "XOAUTH2")  # in order of preference, when the server offers both


class TokenError(MailServerError):
    """No access token could be had from the configured source (or the server refused it)."""


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float | None  # time.time() seconds; None: unknown, asked again at each login
    issued_at: float = 0.0

    def usable(self, now: float) -> bool:
        """True until ``REFRESH_MARGIN`` before expiry (half its life for a short token)."""
        if self.expires_at is None:
            return False
        margin = min(REFRESH_MARGIN, (self.expires_at - self.issued_at) / 2)
        return now < self.expires_at - margin


_cache: dict[OAuth2Config, Token] = {}
_lock = threading.Lock()


def access_token(cfg: OAuth2Config) -> str:
    """A token from the cache while it has time left, else a fresh one from the source."""
    return token(cfg).value


def token(cfg: OAuth2Config) -> Token:
    """``access_token`` with its expiry (for ``doctor``)."""
    with _lock:
        cached = _cache.get(cfg)
        if cached is not None and cached.usable(time.time()):
            return cached
        fresh = fetch(cfg)
        _cache[cfg] = fresh
        return fresh


def renew(cfg: OAuth2Config, refused: str) -> str | None:
    """A fresh token after ``refused`` was refused; None when the source gives it again."""
    with _lock:
        if _cache.get(cfg, Token("", None)).value == refused:
            del _cache[cfg]
        token = fetch(cfg)
        _cache[cfg] = token
    return None if token.value == refused else token.value


def forget() -> None:
    """Drop every cached token (a new configuration, tests)."""
    with _lock:
        _cache.clear()


def fetch(cfg: OAuth2Config) -> Token:
    """A new token from the source, bypassing the cache."""
    cfg.require_secrets()
    if cfg.provider == "command":
        return _from_command(cfg)
    if cfg.provider == "microsoft":
        return _from_microsoft(cfg)
    return _from_google(cfg)


# -- SASL ----------------------------------------------------------------------------------
def choose_mechanism(offered: set[str], server: str, section: str) -> str:
    """OAUTHBEARER (RFC 7628) when the server offers it, else XOAUTH2."""
    for mechanism in MECHANISMS:
        if mechanism in offered:
            return mechanism
    others = " ".join(sorted(offered)) or "none"
    raise TokenError(
        f"{server}: the server offers no OAuth2 login (XOAUTH2 or OAUTHBEARER; it offers "
        f'{others}): check [{section}] host and port, or set [{section}] auth = "password"'
    )


def sasl_response(mechanism: str, user: str, token: str, host: str, port: int) -> str:
    """The client's first message of an XOAUTH2 or OAUTHBEARER exchange."""
    if mechanism == "XOAUTH2":
        return f"user={user}\x01auth=Bearer {token}\x01\x01"
    name = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={name},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"


def refusal_hint(cfg: OAuth2Config, protocol: str) -> str:
    """What to check when a server refuses a token the provider gave."""
    if cfg.provider == "microsoft":
        permission = "IMAP.AccessAsApp" if protocol == "IMAP" else "SMTP.SendAsApp"
        return (
            f"check that the app has the {permission} permission with admin consent, and that "
            "its Exchange service principal has access to the mailbox (Add-MailboxPermission)"
        )
    if cfg.provider == "google":
        return (
            "check the domain-wide delegation of the client id with the scope "
            f"{' '.join(cfg.scopes)} in the Google Admin console, and that IMAP is enabled"
        )
    return f"check the token that [{cfg.section}] token_command prints, and for whom"


# -- sources -------------------------------------------------------------------------------
def _from_command(cfg: OAuth2Config) -> Token:
    name = cfg.describe()
    try:
        done = subprocess.run(
            list(cfg.token_command), capture_output=True, text=True, timeout=cfg.timeout,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise TokenError(
            f"{name} cannot be run: {cfg.token_command[0]} is not found; check "
            f"[{cfg.section}] token_command"
        ) from None
    except subprocess.TimeoutExpired:
        raise TokenError(
            f"{name} printed no token within {cfg.timeout}s: check it runs without a terminal, "
            f"or raise [{cfg.section}] timeout"
        ) from None
    except OSError as e:
        raise TokenError(f"{name} cannot be run ({e.strerror}): check its permissions") from e
    if done.returncode != 0:
        said = _first_line(done.stderr) or _first_line(done.stdout) or "nothing on stderr"
        raise TokenError(
            f"{name} failed (exit {done.returncode}: {said}): run it by hand to see why"
        )
    return _parse_printed(done.stdout, name, time.time())


def _parse_printed(output: str, name: str, now: float) -> Token:
    """A bare token on the first line, or a JSON object with access_token and expires_in."""
    text = output.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
            value, expires_in = str(data["access_token"]), data.get("expires_in")
        except (ValueError, KeyError, TypeError):
            raise TokenError(f"{name} printed JSON without an access_token") from None
        expires_at = now + float(expires_in) if expires_in else _jwt_expiry(value)
        return Token(value, expires_at, now)
    value = text.splitlines()[0].strip() if text else ""
    if not value or any(c.isspace() for c in value):
        raise TokenError(f"{name} printed no token (one line, the access token, is expected)")
    return Token(value, _jwt_expiry(value), now)


def _jwt_expiry(value: str) -> float | None:
    """The ``exp`` of a token that is a JWT (Microsoft's are); None for an opaque token."""
    parts = value.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(payload["exp"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def _from_microsoft(cfg: OAuth2Config) -> Token:
    import msal
    import requests

    name = cfg.describe()
    check = (
        f"check [{cfg.section}] tenant, client_id, and the client secret in "
        f"${cfg.client_secret_env} (and that it has not expired)"
    )
    session = _session(cfg)
    try:
        app = msal.ConfidentialClientApplication(
            cfg.client_id, client_credential=cfg.client_secret,
            authority=f"{cfg.authority}/{cfg.tenant}", http_client=session,
            # Microsoft's own hosts are known; any other (a national cloud, a test) is as given.
            instance_discovery=None if cfg.authority == MICROSOFT_AUTHORITY else False,
            token_cache=msal.TokenCache(),
        )  # fmt: skip
        result: dict[str, Any] = app.acquire_token_for_client(scopes=list(cfg.scopes))
    except requests.exceptions.SSLError as e:
        raise TokenError(
            f"{name}: {cfg.authority}'s certificate is refused ({_tls_reason(e)}): check "
            f"[{cfg.section}] authority, or give the CA that signed it with [{cfg.section}] ca_file"
        ) from e
    except requests.exceptions.RequestException as e:
        raise TokenError(f"{name}: cannot reach {cfg.authority} ({type(e).__name__})") from e
    except ValueError as e:  # MSAL: the tenant's configuration could not be read
        said = _first_line(str(e)).split(". ")[0].rstrip(".")
        raise TokenError(f"{name}: {said}: check [{cfg.section}] tenant") from e
    finally:
        session.close()
    if "access_token" not in result:
        error = result.get("error", "no token")
        description = _first_line(str(result.get("error_description", "")))
        raise TokenError(f"{name} refused the token request: {error} ({description}): {check}")
    now = time.time()
    expires_in = float(result.get("expires_in", 0)) or None
    return Token(str(result["access_token"]), now + expires_in if expires_in else None, now)


def _from_google(cfg: OAuth2Config) -> Token:
    from google.auth import exceptions as google_errors

    name = cfg.describe()
    now = time.time()
    credentials = _google_credentials(cfg, name)
    request = _GoogleRequest(cfg)
    try:
        credentials.refresh(request)
    except google_errors.RefreshError as e:
        raise TokenError(
            f"{name} refused the token request: {_google_reason(e)}: {_google_check(cfg)}"
        ) from e
    except google_errors.TransportError as e:
        uri = cfg.token_uri or GOOGLE_TOKEN_URI
        raise TokenError(f"{name}: cannot reach {uri} ({_first_line(str(e))})") from e
    finally:
        request.close()
    expiry: dt.datetime | None = credentials.expiry
    expires_at = expiry.replace(tzinfo=dt.UTC).timestamp() if expiry else None
    return Token(str(credentials.token), expires_at, now)


def _google_credentials(cfg: OAuth2Config, name: str) -> Any:
    if cfg.grant == "refresh_token":
        from google.oauth2 import credentials

        return credentials.Credentials(
            None, refresh_token=cfg.refresh_token, token_uri=cfg.token_uri,
            client_id=cfg.client_id, client_secret=cfg.client_secret, scopes=list(cfg.scopes),
        )  # fmt: skip
    from google.oauth2 import service_account

    info = _service_account_info(cfg, name)
    if cfg.token_uri:
        info["token_uri"] = cfg.token_uri
    try:
        return service_account.Credentials.from_service_account_info(
            info, scopes=list(cfg.scopes), subject=cfg.subject
        )
    except (ValueError, KeyError) as e:
        raise TokenError(
            f"{name}: the key in ${cfg.service_account_env} is not a service account key "
            f"({type(e).__name__}: {_first_line(str(e))}): give the JSON key file downloaded "
            "from the Google Cloud console (its contents or its path)"
        ) from e


def _service_account_info(cfg: OAuth2Config, name: str) -> dict[str, Any]:
    """The key JSON in the variable, or in the file whose path the variable holds."""
    value = (cfg.service_account or "").strip()
    if not value.startswith("{"):
        try:
            value = Path(value).expanduser().read_text(encoding="utf-8")
        except OSError as e:
            raise TokenError(
                f"{name}: ${cfg.service_account_env} names {value!r}, which cannot be read "
                f"({e.strerror}): give the key's JSON or the path of its file"
            ) from e
    try:
        info = json.loads(value)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise TokenError(f"{name}: the key in ${cfg.service_account_env} is not JSON")
    return info


def _google_reason(error: Exception) -> str:
    args = error.args
    data = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    if data.get("error"):
        description = data.get("error_description", "")
        return f"{data['error']} ({description})" if description else str(data["error"])
    return _first_line(str(args[0]) if args else str(error))


def _google_check(cfg: OAuth2Config) -> str:
    if cfg.grant == "refresh_token":
        return (
            f"check [{cfg.section}] client_id, the secret in ${cfg.client_secret_env} and the "
            f"refresh token in ${cfg.refresh_token_env} (revoked, or issued to another client?)"
        )
    return (
        f"check that the service account's client id has domain-wide delegation of "
        f"{' '.join(cfg.scopes)} in the Google Admin console, and that {cfg.subject} is a "
        "user of the domain"
    )


class _GoogleRequest:
    """google-auth's requests transport, through ``_session``."""

    def __init__(self, cfg: OAuth2Config) -> None:
        from google.auth.transport.requests import Request

        self._session = _session(cfg)
        self._request = Request(self._session)
        self._timeout = cfg.timeout

    def close(self) -> None:
        self._session.close()

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
        kwargs["timeout"] = self._timeout
        return self._request(url, method, **kwargs)


def _session(cfg: OAuth2Config) -> Any:
    """A requests session with the configured timeout, trusting ``ca_file`` when given.

    The CA goes with each request: requests lets $REQUESTS_CA_BUNDLE override a session's
    own ``verify``, and a configured CA must win. Proxies still come from the environment.
    """
    import requests

    class Session(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs.setdefault("timeout", cfg.timeout)
            if cfg.ca_file is not None:
                kwargs["verify"] = str(cfg.ca_file)
            return super().request(method, url, *args, **kwargs)

    return Session()


def _tls_reason(error: Exception) -> str:
    found = re.search(r"certificate verify failed: ([^()'\"]+)", str(error))
    return found.group(1).strip() if found else type(error).__name__


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
