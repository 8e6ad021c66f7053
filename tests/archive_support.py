"""Shared by the archive's tests: a programme with answers, and ``mailflow serve`` as a process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from datasette_auth_passwords.utils import hash_password

from mailflow.localmail import clients

from .conftest import ENV

FRIDAY = "2026-11-27"
PASSWORD = "un mot de passe de l'équipe"
# Few iterations: the tests log in often; the format is the one of `datasette hash-password`.
HASHED = hash_password(PASSWORD, iterations=1000)
ACCOUNTS = {"MAILFLOW_ARCHIVE_PASSWORDS": f"soizic:{HASHED} raphaelle:{HASHED}"}
# A word that appears in one answer only, accented as written.
WORD = "éléphantesque"
SECRET = "le-secret-des-jetons-0123456789abcdef"


def at(time_: str, day: str = FRIDAY) -> str:
    return f"{day}T{time_}:00+01:00"


def answered_friday(p, day: str = FRIDAY) -> None:
    """alpha answers (then corrects itself), beta answers, gamma never does."""
    p.tick(at("09:00", day))
    a0, b0 = p.defis["alpha"][0], p.defis["beta"][0]
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "Alice", (
        f"Victoires :\nun prototype {WORD} en production\n\nBesoins :\nun juriste"
    )), a0)  # fmt: skip
    p.swaks(clients.outlook(p.localmail.fetch(b0)[0], b0, "Bob", (
        "Victoires : la convention est signée\n\nDifficultés : la préproduction tombe"
    )), b0)  # fmt: skip
    p.wait_shared(2)
    p.tick(at("10:00", day))
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "Alice", (
        f"Victoires :\nun prototype {WORD} en production, et une démo\n\nBesoins :\nun juriste"
    )), a0)  # fmt: skip
    p.wait_shared(3)
    p.tick(at("11:00", day))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """``mailflow serve`` as a real process on a free loopback port."""

    def __init__(self, config_path: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.clients: list[httpx.Client] = []
        command = [sys.executable, "-m", "mailflow", "-c", str(config_path), "serve",
                   "--port", str(self.port)]  # fmt: skip
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env={**os.environ, **ENV, **ACCOUNTS, **(env or {})},
                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"mailflow serve exited: {log.read_text()}")
            try:
                with httpx.Client() as probe:
                    probe.get(f"{self.url}/-/login", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"mailflow serve not up: {log.read_text()}") from None
                time.sleep(0.1)

    def client(self, login: bool = True) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30)
        self.clients.append(client)
        if login:
            page = client.get("/-/login").text
            token = re.search(r'name="csrftoken" value="([^"]+)"', page)
            assert token is not None
            answer = client.post("/-/login", data={
                "username": "soizic", "password": PASSWORD, "csrftoken": token.group(1),
            })  # fmt: skip
            assert answer.status_code == 302, answer.text
        return client

    def stop(self) -> int:
        for client in self.clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)
