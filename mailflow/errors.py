"""The exceptions mailflow raises: one base, configuration apart from runtime."""

from __future__ import annotations


class MailflowError(Exception):
    """Base of every error mailflow raises on purpose."""


class ConfigError(MailflowError):
    """A configuration file, roster or workflow holds a missing or wrong value.

    Raised at load time, before anything runs; the message names the file, the key
    and what was expected, so that it can be fixed without reading code.
    """

    def __init__(self, key: str, expected: str, got: object = None, source: str = "") -> None:
        self.key = key
        self.expected = expected
        self.got = got
        self.source = source
        where = f"{source}: " if source else ""
        found = "" if got is None else f", got {got!r}"
        super().__init__(f"{where}{key}: expected {expected}{found}")


class MailServerError(MailflowError):
    """A mail server could not be reached, refused the login or broke the session.

    The daemon catches it, backs off and reconnects; a one-shot command reports it.
    """


class SendError(MailflowError):
    """An SMTP server refused a message.

    ``permanent`` is true for a 5xx answer (never retried), false for a 4xx answer
    or a dropped connection (retried with backoff).
    """

    def __init__(self, message: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class ClockError(MailflowError):
    """An instant in the future was asked for on an install that is not a rehearsal.

    Raised by ``Engine.tick`` (and so by ``tick --at`` and a daemon on a file clock): a
    real install sends real mail now, so it never acts as if it were later.
    """


class TemplateError(MailflowError):
    """A template is missing, does not compile, or uses a variable it was not given."""


class StoreError(MailflowError):
    """The database cannot be used by this user: its file or folder is not writable.

    Raised by ``open_db`` before any statement, so that a database made by root (a first
    ``doctor`` run as root, say) is one line naming the owner, not a failed write later.
    """


class LockError(MailflowError):
    """Another mailflow process already holds the database (one daemon per database)."""


class LocalMailError(MailflowError):
    """The loopback Dovecot or SMTP server used by tests, the demo and benchmarks failed.

    Its message says how to install what is missing.
    """
