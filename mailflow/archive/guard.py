"""The archive's Datasette plugin: nothing without a login, no introspection pages at all.

Datasette's own permissions (``allow`` in the metadata) already refuse an anonymous
visitor; this wrapper is a second lock in front of every route, including those of
plugins that check no permission (the password tool). Anyone not logged in is sent to
the login page; the introspection pages under ``/-/`` (metadata with the plugins'
configuration, versions, settings, databases, threads) answer 404 to everyone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from datasette import hookimpl
from datasette.plugins import pm
from datasette.utils import await_me_maybe
from datasette.utils.asgi import Request, Response

NAME = "mailflow-archive"
# Under /-/: what a visitor may reach before logging in, and what a logged-in one may.
PUBLIC = ("-/login", "-/static/", "-/static-plugins/", "favicon.ico")
LOGGED_IN = ("-/logout", "-/actor")

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


def register() -> None:
    """Install the plugin in Datasette's plugin manager (once per process)."""
    import sys

    module = sys.modules[__name__]
    if not pm.is_registered(module):
        pm.register(module, name=NAME)


def _config(datasette: Any) -> dict[str, Any]:
    return datasette.plugin_config(NAME) or {}


def _path(datasette: Any, scope: Scope) -> str:
    """The path inside the archive, without the base URL the reverse proxy serves it under."""
    path: str = scope.get("path", "/")
    base = datasette.setting("base_url") or "/"
    if path.startswith(base):
        path = "/" + path[len(base) :]
    return path.lstrip("/")


async def _actor(datasette: Any, scope: Scope, receive: Any) -> Any:
    request = Request(scope, receive)
    for actor in pm.hook.actor_from_request(datasette=datasette, request=request):
        actor = await await_me_maybe(actor)
        if actor:
            return actor
    return None


@hookimpl
def asgi_wrapper(datasette: Any) -> Callable[[ASGI], ASGI]:
    def wrap(app: ASGI) -> ASGI:
        async def guarded(scope: Scope, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            path = _path(datasette, scope)
            if path.startswith(PUBLIC):
                await app(scope, receive, send)
                return
            if path.startswith("-/") and not path.startswith(LOGGED_IN):
                await Response.text("404", status=404).asgi_send(send)
                return
            actor = await _actor(datasette, scope, receive)
            if actor is None or actor.get("id") not in _config(datasette).get("accounts", ()):
                login = datasette.urls.path("/-/login")
                await Response.redirect(login).asgi_send(send)
                return
            await app(scope, receive, send)

        return guarded

    return wrap


@hookimpl
def extra_template_vars(datasette: Any) -> dict[str, Any]:
    """The login page's words, in the configured language."""
    return {"mailflow_login": _config(datasette).get("login", {})}
