"""HTTP for the review page: routes over :class:`cellsift.pipeline.review.ReviewService`.

Safety:

* bound to a loopback address by default; any other address requires a token, given in
  the URL (``?token=``) once, kept in an HttpOnly cookie afterwards (as Jupyter does), or
  sent as the ``X-Cellsift-Token`` header; compared in constant time;
* on loopback the ``Host`` header must name a loopback host (no DNS rebinding);
* state-changing requests (``POST``) need the ``X-Cellsift: 1`` header, which a form on
  another site cannot send (no cross-site request forgery);
* static files are served from a fixed list of names; cells and sessions are named by
  ids that the service looks up in the lake's tables, never joined to a path.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
from collections.abc import Callable
from importlib import resources
from typing import Any, Final

from cellsift.schemas import CellsiftError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["LOOPBACK_HOSTS", "build_app", "is_loopback", "serve"]

#: Host names and addresses that only this machine can reach.
LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "::1", "[::1]")
_STATIC: Final = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
_COOKIE: Final = "cellsift_token"
#: Most cells a card request may name as coming next (their sessions are read ahead).
_MAX_AHEAD: Final = 32


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def _host_name(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8000`` -> ``[::1]``, ``localhost:80`` -> ``localhost``)."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


def _static(name: str) -> bytes:
    return (resources.files("cellsift.cli.web") / "static" / name).read_bytes()


def build_app(service: Any, *, token: str | None = None, loopback: bool = True) -> Any:
    """The Starlette app of the review page.

    Parameters
    ----------
    service
        A :class:`cellsift.pipeline.review.ReviewService`.
    token
        Required on every request when given (see the module docstring).
    loopback
        The server listens on loopback only: check the ``Host`` header.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def refuse(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def allowed(request: Request) -> str | None:
        if loopback:
            host = _host_name(request.headers.get("host") or "")
            if not is_loopback(host):
                return "this server answers on its loopback address only"
        if token is not None:
            given = (
                request.query_params.get("token")
                or request.headers.get("x-cellsift-token")
                or request.cookies.get(_COOKIE)
                or ""
            )
            if not secrets.compare_digest(given.encode(), token.encode()):
                return "a valid token is needed: open the URL the server printed"
        if request.method == "POST" and request.headers.get("x-cellsift") != "1":
            return "missing X-Cellsift header"
        return None

    def guarded(handler: Callable[..., Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            problem = allowed(request)
            if problem is not None:
                return refuse(403, problem)
            try:
                response = await handler(request)
            except CellsiftError as exc:
                return refuse(400, exc.one_line())
            except (ValueError, TypeError, json.JSONDecodeError) as exc:
                return refuse(400, f"bad request: {exc}")
            if token is not None and request.query_params.get("token"):
                response.set_cookie(_COOKIE, token, httponly=True, samesite="strict")
            return response

        return endpoint

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        return run_in_threadpool(fn, *args)

    async def index(request: Request) -> Response:
        return Response(_static("index.html"), media_type="text/html", headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in _STATIC:
            return refuse(404, "not found")
        return Response(_static(name), media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    async def overview(request: Request) -> Response:
        return JSONResponse(await call(service.overview))

    async def queue(request: Request) -> Response:
        return JSONResponse(await call(service.queue))

    async def card(request: Request) -> Response:
        named = request.query_params.getlist("ahead")  # none: the queue's order
        ahead = [str(c)[:200] for c in named[:_MAX_AHEAD]] if named else None
        return JSONResponse(await call(service.card, request.query_params.get("cid", ""), ahead))

    async def field(request: Request) -> Response:
        return JSONResponse(await call(service.field, request.query_params.get("sid", "")))

    async def label(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise ParameterError("the body must be a JSON object", field="label")
        value = body.get("label")
        return JSONResponse(
            await call(
                service.set_label,
                str(body.get("cid", "")),
                None if value is None else str(value),
                body.get("reason"),
            )
        )

    async def retrain(request: Request) -> Response:
        if request.method == "POST":
            return JSONResponse(await call(service.start_retrain))
        return JSONResponse(await call(service.retrain.status))

    routes = [
        Route("/", guarded(index)),
        Route("/static/{name}", guarded(static)),
        Route("/api/overview", guarded(overview)),
        Route("/api/queue", guarded(queue)),
        Route("/api/card", guarded(card)),
        Route("/api/field", guarded(field)),
        Route("/api/label", guarded(label), methods=["POST"]),
        Route("/api/retrain", guarded(retrain), methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes)


def serve(
    service: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the review page until interrupted.

    Parameters
    ----------
    service
        A :class:`cellsift.pipeline.review.ReviewService`.
    host
        Address to bind; anything but loopback requires a token (one is generated).
    port
        TCP port; 0 picks a free one.
    token
        Token to require (default: none on loopback, a random one elsewhere).
    on_ready
        Called with the page's URL once the socket listens.
    """
    import uvicorn

    loopback = is_loopback(host)
    if not loopback and token is None:
        token = secrets.token_urlsafe(24)
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ParameterError(
            f"cannot listen on {host}:{port} ({exc.strerror})",
            field="--port",
            fix="choose another --port, or 0 for a free one",
        ) from None
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
    app = build_app(service, token=token, loopback=loopback)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(url)
    server.run(sockets=[sock])
