"""Xandikos behind HTTP Basic auth, as real deployments run it (Xandikos has no authentication of its own).

Run as a script: `python xandikos_front.py DIRECTORY PORT HTPASSWD`. The app is Xandikos's own (its aiohttp server,
its well-known redirects, its default calendar) with its Basic-auth middleware in front, checking an htpasswd file
that is read again whenever it changes, so a test can change the password of a running server. Xandikos's own
`--htpasswd` refuses plain HTTP, which is all a loopback test has."""

from __future__ import annotations

import sys

from aiohttp import web
from xandikos import htpasswd
from xandikos.web import (
    WELLKNOWN_DAV_PATHS,
    RedirectDavHandler,
    SingleUserFilesystemBackend,
    XandikosApp,
    basic_auth_middleware,
)

PRINCIPAL = "/user/"


def build(directory: str, htpasswd_path: str) -> web.Application:
    backend = SingleUserFilesystemBackend(directory)
    backend._mark_as_principal(PRINCIPAL)
    backend.create_principal(PRINCIPAL, create_defaults=True)
    dav = XandikosApp(backend, current_user_principal=PRINCIPAL, strict=True)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await dav.aiohttp_handler(request, "/")

    app = web.Application(middlewares=[basic_auth_middleware(htpasswd.HtpasswdFile(htpasswd_path))])
    for path in WELLKNOWN_DAV_PATHS:
        app.router.add_route("*", path, RedirectDavHandler("/").__call__)
    app.router.add_route("*", "/{path_info:.*}", handle)
    return app


if __name__ == "__main__":
    directory, port, htpasswd_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    web.run_app(build(directory, htpasswd_path), host="127.0.0.1", port=port, print=None, access_log=None)
