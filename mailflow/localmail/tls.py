"""A private CA and the certificates it signs, made with openssl, for servers on loopback.

``make_certificates`` stands for an organisation's own CA: a certificate for 127.0.0.1
(the servers'), and an unrelated CA that signed nothing (what a client must refuse).
The server certificate names only the address 127.0.0.1, so that a client connecting to
``localhost`` meets a certificate for the wrong host.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import LocalMailError

_EXTENSIONS = (
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = IP:127.0.0.1\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n"
)


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA, the server's certificate and key, and a CA that signed nothing."""

    ca: Path
    cert: Path
    key: Path
    stranger_ca: Path


def make_certificates(folder: Path) -> Certificates:
    """Make (or reuse) the files under ``folder``; about 0.1 s with EC keys."""
    folder.mkdir(parents=True, exist_ok=True)
    made = Certificates(
        folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "stranger.pem"
    )
    if all(p.exists() for p in (made.ca, made.cert, made.key, made.stranger_ca)):
        return made
    if shutil.which("openssl") is None:
        raise LocalMailError(
            "openssl is not installed: apt-get install -y openssl (or run `bash .ci/setup`)"
        )
    _ca(folder / "ca.key", made.ca, "mailflow test CA")
    _ca(folder / "stranger.key", made.stranger_ca, "unrelated CA")
    csr = folder / "server.csr"
    ext = folder / "server.ext"
    ext.write_text(_EXTENSIONS)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", made.key, "-out", csr, "-subj", "/CN=127.0.0.1")  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", made.ca, "-CAkey", folder / "ca.key",
             "-CAcreateserial", "-days", "3", "-out", made.cert, "-extfile", ext)  # fmt: skip
    made.key.chmod(0o644)  # read by the servers' own users (Dovecot's config process is root)
    return made


def _ca(key: Path, cert: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "3", "-keyout", key, "-out", cert, "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise LocalMailError(f"openssl {args[0]} failed: {result.stderr.strip()}")
