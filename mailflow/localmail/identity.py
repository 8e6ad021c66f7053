"""An identity provider on loopback: the token endpoints mailflow's providers speak, and the
introspection endpoint (RFC 7662) that the loopback Dovecot and SMTP server ask about tokens.

It stands in for Microsoft's and Google's: over HTTPS (certificates of the harness CA) it
serves the Microsoft identity platform's tenant discovery and client-credentials grant
(``/{tenant}/oauth2/v2.0/token``, what MSAL sends), and Google's token endpoint
(``/token``: a service account's signed JWT assertion, checked against its public key
and its domain-wide delegation, or a refresh token). Over plain HTTP on loopback it
answers introspection. Tokens are opaque, belong to one mailbox, and can be expired or
revoked by a test; ``requests`` records every grant asked for.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .tls import Certificates

_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth addresses its assertions to Google's token URI, wherever it posts them.
_GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class _Issued:
    username: str
    expires_at: float
    scope: str
    revoked: bool = False


@dataclass
class _Client:
    """A registered app: what it must present, the mailbox it may reach, its tokens' life."""

    secret: str
    mailbox: str
    lifetime: int
    scopes: tuple[str, ...]
    public_key: Any = None  # a service account's
    refresh_tokens: set[str] = field(default_factory=set)
    disabled: bool = False


class IdentityProvider:
    """Token and introspection endpoints on 127.0.0.1 (``start``/``stop``)."""

    def __init__(self, certificates: Certificates) -> None:
        self.certificates = certificates
        self._tokens: dict[str, _Issued] = {}
        self._clients: dict[str, _Client] = {}
        self._tenants: set[str] = set()
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (client id, grant type), in order
        self._servers: list[ThreadingHTTPServer] = []

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> IdentityProvider:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificates.cert, self.certificates.key)
        for secure in (True, False):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            server.daemon_threads = True
            if secure:
                server.socket = context.wrap_socket(server.socket, server_side=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def introspection_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}/introspect"

    @property
    def google_token_uri(self) -> str:
        return f"{self.https_url}/token"

    # -- what tests set up -------------------------------------------------------------
    def issue(self, username: str, lifetime: float = 3600, scope: str = "") -> str:
        """A token for ``username``'s mailbox, valid ``lifetime`` seconds."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Issued(username.lower(), time.time() + lifetime, scope)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens[token].revoked = True

    def expire(self, token: str) -> None:
        """End a token's life now, whatever it was issued for."""
        with self._lock:
            self._tokens[token].expires_at = time.time() - 1

    def tokens_of(self, username: str) -> list[str]:
        with self._lock:
            return [t for t, i in self._tokens.items() if i.username == username.lower()]

    def add_microsoft_app(
        self, tenant: str, client_id: str, secret: str, mailbox: str, lifetime: int = 3600
    ) -> None:
        """An app registration with a client secret, granted one mailbox (IMAP and SMTP)."""
        with self._lock:
            self._tenants.add(tenant)
            self._clients[client_id] = _Client(
                secret, mailbox.lower(), lifetime, ("https://outlook.office365.com/.default",)
            )

    def add_google_service_account(
        self, mailbox: str, lifetime: int = 3600, delegated: bool = True
    ) -> dict[str, str]:
        """A service account (its JSON key, as the Cloud console gives it), with domain-wide
        delegation of https://mail.google.com/ for ``mailbox`` unless not ``delegated``."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        client_id = str(100000 + len(self._clients))
        email = f"mailflow-{client_id}@project.iam.gserviceaccount.test"
        scopes = ("https://mail.google.com/",) if delegated else ()
        with self._lock:
            self._clients[email] = _Client("", mailbox.lower(), lifetime, scopes, key.public_key())
        return {
            "type": "service_account", "project_id": "project", "private_key_id": client_id,
            "private_key": pem, "client_email": email, "client_id": client_id,
            "token_uri": self.google_token_uri,
        }  # fmt: skip

    def add_google_refresh_token(
        self, client_id: str, secret: str, mailbox: str, lifetime: int = 3600
    ) -> str:
        """An OAuth client and a refresh token a user of ``mailbox`` granted it."""
        refresh = "1//" + secrets.token_urlsafe(32)
        with self._lock:
            client = self._clients.setdefault(
                client_id, _Client(secret, mailbox.lower(), lifetime, ("https://mail.google.com/",))
            )
            client.refresh_tokens.add(refresh)
        return refresh

    def disable(self, client_id: str) -> None:
        """The app is deleted (or its consent revoked): no more tokens, and its tokens end."""
        with self._lock:
            client = self._clients[client_id]
            client.disabled = True
            client.refresh_tokens.clear()
            for issued in self._tokens.values():
                if issued.username == client.mailbox:
                    issued.revoked = True

    # -- what the endpoints answer ------------------------------------------------------
    def introspect(self, token: str) -> dict[str, Any]:
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None or issued.revoked or issued.expires_at <= time.time():
                return {"active": False}
            return {
                "active": True, "username": issued.username, "exp": int(issued.expires_at),
                "scope": issued.scope, "token_type": "Bearer",
            }  # fmt: skip

    def discovery(self, tenant: str) -> tuple[int, dict[str, Any]]:
        if tenant not in self._tenants:
            return 400, {
                "error": "invalid_tenant",
                "error_description": f"AADSTS90002: Tenant '{tenant}' not found.",
            }
        base = f"{self.https_url}/{tenant}"
        return 200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "issuer": f"{base}/v2.0", "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "token"],
        }  # fmt: skip

    def grant(self, tenant: str | None, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint: a token, or the error the real provider would give."""
        grant_type = form.get("grant_type", "")
        if grant_type == "client_credentials" and tenant in self._tenants:
            return self._client_credentials(form)
        if grant_type == _JWT_BEARER and tenant is None:
            return self._jwt_bearer(form)
        if grant_type == "refresh_token" and tenant is None:
            return self._refresh(form)
        return 400, {"error": "unsupported_grant_type", "error_description": grant_type}

    def _client_credentials(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id", "")
        self.requests.append((client_id, "client_credentials"))
        client = self._clients.get(client_id)
        if client is None or client.disabled:
            return 400, {
                "error": "unauthorized_client",
                "error_description": f"AADSTS700016: Application with identifier '{client_id}' "
                "was not found in the directory.",
            }
        if form.get("client_secret") != client.secret:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            }
        if form.get("scope") not in client.scopes:
            return 400, {
                "error": "invalid_scope",
                "error_description": f"AADSTS1002012: The provided value for scope "
                f"{form.get('scope')} is not valid.",
            }
        return self._token(client, form["scope"])

    def _jwt_bearer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        import jwt

        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            client = self._clients.get(str(claims.get("iss")))
            if client is None or client.public_key is None:
                raise jwt.InvalidTokenError("unknown service account")
            jwt.decode(
                assertion, client.public_key, algorithms=["RS256"],
                audience=[self.google_token_uri, _GOOGLE_AUDIENCE],
            )  # fmt: skip
        except jwt.InvalidTokenError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        self.requests.append((str(claims["iss"]), _JWT_BEARER))
        scopes = str(claims.get("scope", "")).split()
        if (
            client.disabled
            or claims.get("sub") != client.mailbox
            or not scopes
            or any(s not in client.scopes for s in scopes)
        ):
            return 401, {
                "error": "unauthorized_client",
                "error_description": "Client is unauthorized to retrieve access tokens using "
                "this method, or client not authorized for any of the scopes requested.",
            }
        return self._token(client, " ".join(scopes))

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id", "")
        self.requests.append((client_id, "refresh_token"))
        client = self._clients.get(client_id)
        if client is None or form.get("client_secret") != client.secret:
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        if form.get("refresh_token") not in client.refresh_tokens:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired "
                         "or revoked."}  # fmt: skip
        return self._token(client, " ".join(client.scopes))

    def _token(self, client: _Client, scope: str) -> tuple[int, dict[str, Any]]:
        token = self.issue(client.mailbox, client.lifetime, scope)
        return 200, {
            "token_type": "Bearer", "expires_in": client.lifetime,
            "ext_expires_in": client.lifetime, "access_token": token, "scope": scope,
        }  # fmt: skip


def _handler(provider: IdentityProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests read outcomes, not access logs

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
            if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                self._answer(*provider.discovery(parts[0]))
            else:
                self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
            if parts == ["introspect"]:
                self._answer(200, provider.introspect(form.get("token", "")))
            elif parts == ["token"]:
                self._answer(*provider.grant(None, form))
            elif len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
                self._answer(*provider.grant(parts[0], form))
            else:
                self._answer(404, {"error": "not_found"})

    return Handler
