"""A DNS server on loopback (UDP) holding TXT records, and the DKIM keys a test signs with.

It stands in for the senders' DNS: ``add_dkim_key`` makes a key pair, publishes its public
half at ``selector._domainkey.domain`` as a real domain would, and returns the private
half for ``sign``. Every other name is NXDOMAIN. mailflow reaches it through
``[security] dns_server = "127.0.0.1:PORT"``.
"""

from __future__ import annotations

import base64
import socketserver
import threading
from collections.abc import Iterable

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsStub:
    """TXT records by name, answered over UDP on 127.0.0.1 (``start``/``stop``)."""

    def __init__(self) -> None:
        self.records: dict[str, list[bytes]] = {}
        self.queries: list[str] = []
        self._server: socketserver.ThreadingUDPServer | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, for ``[security] dns_server``."""
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> DnsStub:
        stub = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(stub.answer(data), self.client_address)

        self._server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add_txt(self, name: str, value: bytes) -> None:
        """Publish ``value`` (split into 255-byte strings, as DNS requires)."""
        key = name.lower().rstrip(".") + "."
        self.records[key] = [value[i : i + 255] for i in range(0, len(value), 255)]

    def remove(self, name: str) -> None:
        self.records.pop(name.lower().rstrip(".") + ".", None)

    def add_dkim_key(self, domain: str, selector: str = "mail") -> bytes:
        """A 2048-bit RSA key published for ``domain``; returns its private key (PEM)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        self.add_txt(f"{selector}._domainkey.{domain}", record)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower()
        self.queries.append(name)
        strings = self.records.get(name)
        if strings is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            response.answer.append(_txt(question.name, strings))
        return response.to_wire()


def _txt(name: dns.name.Name, strings: Iterable[bytes]) -> dns.rrset.RRset:
    text = " ".join('"' + s.decode().replace('"', '\\"') + '"' for s in strings)
    return dns.rrset.from_text(name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, text)


def sign(raw: bytes, domain: str, key: bytes, selector: str = "mail", **options: object) -> bytes:
    """``raw`` with a DKIM-Signature by ``domain`` on top, as its outgoing server adds it."""
    import dkim

    headers = options.pop("include_headers", None) or [
        b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"mime-version",
        b"content-type", b"content-transfer-encoding", b"in-reply-to", b"references",
    ]  # fmt: skip
    signature = dkim.sign(
        raw, selector.encode(), domain.encode(), key, include_headers=headers, **options
    )
    return bytes(signature) + raw
