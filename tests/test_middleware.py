"""Request middleware: real ASGI and WSGI apps, in-process, one context per request."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import pygov
import pygov.aio
from pygov.context import EMPTY_CONTEXT, current_context
from pygov.middleware import ASGIMiddleware, WSGIMiddleware, client_ip, networks
from tests.helpers import run_threads

TRUSTED = networks(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])


def context_dict() -> dict[str, Any]:
    ctx = current_context()
    return {
        "user": ctx.user,
        "service": ctx.service,
        "ip": ctx.ip,
        "user_agent": ctx.user_agent,
        "request_id": ctx.request_id,
    }


# --- client IP -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # An untrusted peer's header is ignored: anyone can send X-Forwarded-For.
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        ("10.1.2.3", None, "10.1.2.3"),
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),
        # Read from the right: the client may prepend any lie; trusted hops are skipped.
        ("10.1.2.3", "1.1.1.1, 198.51.100.1, 10.9.9.9", "198.51.100.1"),
        # Every hop trusted: the leftmost is the client.
        ("10.1.2.3", "10.0.0.7, 10.0.0.8", "10.0.0.7"),
        # Garbage beyond our proxies: the last address they vouched for.
        ("10.1.2.3", "198.51.100.1, not-an-ip", "10.1.2.3"),
        ("10.1.2.3", "198.51.100.1:4711", "198.51.100.1"),
        ("fd00::1", "[2001:db8::5]:443", "2001:db8::5"),
        ("::ffff:10.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("unix-socket", "198.51.100.1", None),
        (None, None, None),
    ],
)
def test_client_ip(peer: str | None, forwarded: str | None, expected: str | None) -> None:
    assert client_ip(peer, forwarded, TRUSTED) == expected


def test_without_trusted_proxies_the_header_is_never_used() -> None:
    assert client_ip("10.1.2.3", "198.51.100.1", ()) == "10.1.2.3"


# --- ASGI ------------------------------------------------------------------------------------


def asgi_scope(
    *, client: str = "127.0.0.1", headers: dict[str, str] | list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in items],
        "client": (client, 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call_asgi(app: Any, scope: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
    """Drive one ASGI request by hand, as a server would."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


async def echo_context_asgi(scope: Any, receive: Any, send: Any) -> None:
    body = json.dumps(context_dict()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_asgi_fills_the_context_and_echoes_the_request_id() -> None:
    app = ASGIMiddleware(
        echo_context_asgi,
        user=lambda scope: dict(scope["headers"]).get(b"x-user", b"").decode() or None,
        service="FeesGateway",
        trusted_proxies=["127.0.0.1"],
    )
    scope = asgi_scope(
        headers=[
            ("X-User", "amina"),
            ("User-Agent", "fees-ui/2.1"),
            ("X-Request-ID", "req-42"),
            ("X-Forwarded-For", "1.1.1.1"),
            ("X-Forwarded-For", "198.51.100.7"),  # a second header line: the nearer hop
        ]
    )
    status, headers, body = asyncio.run(call_asgi(app, scope))
    assert status == 200
    assert json.loads(body) == {
        "user": "amina",
        "service": "FeesGateway",
        "ip": "198.51.100.7",
        "user_agent": "fees-ui/2.1",
        "request_id": "req-42",
    }
    assert headers[b"x-request-id"] == b"req-42"
    assert current_context() == EMPTY_CONTEXT


def test_asgi_generates_a_request_id_when_missing_or_unsafe() -> None:
    app = ASGIMiddleware(echo_context_asgi)

    async def both() -> list[Any]:
        return [
            await call_asgi(app, asgi_scope()),
            await call_asgi(app, asgi_scope(headers={"X-Request-ID": "has space\x01"})),
        ]

    (_, h1, b1), (_, h2, b2) = asyncio.run(both())
    ids = {json.loads(b1)["request_id"], json.loads(b2)["request_id"]}
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)
    assert {h1[b"x-request-id"].decode(), h2[b"x-request-id"].decode()} == ids
    assert json.loads(b1)["user"] is None


def test_asgi_async_user_callable_and_app_set_request_id_header_wins() -> None:
    async def who(scope: Any) -> str:
        await asyncio.sleep(0)
        return "bruno"

    async def app_with_header(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 201, "headers": [(b"x-request-id", b"own")]}
        )
        await send({"type": "http.response.body", "body": json.dumps(context_dict()).encode()})

    status, headers, body = asyncio.run(
        call_asgi(ASGIMiddleware(app_with_header, user=who), asgi_scope())
    )
    assert status == 201 and headers[b"x-request-id"] == b"own"
    assert json.loads(body)["user"] == "bruno"


def test_asgi_context_is_cleared_after_an_exception() -> None:
    seen: list[Any] = []

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_context().user)
        raise RuntimeError("boom")

    app = ASGIMiddleware(failing, user=lambda scope: "chen")

    async def go() -> Any:
        with pytest.raises(RuntimeError, match="boom"):
            await app(asgi_scope(), None, None)  # type: ignore[arg-type]
        return current_context()

    assert asyncio.run(go()) == EMPTY_CONTEXT
    assert seen == ["chen"]


def test_asgi_lifespan_passes_through_without_context() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], current_context()))

    asyncio.run(ASGIMiddleware(app, user=lambda s: "x")({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == [("lifespan", EMPTY_CONTEXT)]


def test_asgi_concurrent_requests_never_see_each_other() -> None:
    count = 20
    barrier = asyncio.Barrier(count)

    async def slow_echo(scope: Any, receive: Any, send: Any) -> None:
        before = context_dict()
        await barrier.wait()  # every request is in flight at once here
        after = context_dict()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps([before, after]).encode()})

    app = ASGIMiddleware(
        slow_echo,
        user=lambda scope: dict(scope["headers"])[b"x-user"].decode(),
        trusted_proxies=["10.0.0.0/8"],
    )

    async def go() -> list[Any]:
        return await asyncio.gather(
            *(
                call_asgi(
                    app,
                    asgi_scope(
                        client="10.0.0.2",
                        headers={
                            "X-User": f"user-{i}",
                            "X-Forwarded-For": f"198.51.100.{i}",
                            "X-Request-ID": f"r{i}",
                        },
                    ),
                )
                for i in range(count)
            )
        )

    results = asyncio.run(go())
    for i, (_, _, body) in enumerate(results):
        before, after = json.loads(body)
        assert before == after
        assert (after["user"], after["ip"], after["request_id"]) == (
            f"user-{i}",
            f"198.51.100.{i}",
            f"r{i}",
        )


def test_asgi_context_reaches_the_database(pg_dsn: str) -> None:
    """The async API called inside a request records the request's user."""

    async def go() -> list[Any]:
        agov = await pygov.aio.connect(pg_dsn)
        try:

            async def pay(scope: Any, receive: Any, send: Any) -> None:
                path = scope["path"]
                result = await agov.idempotency.check_and_record("payment", path, {"ok": True})
                body = json.dumps({"created_by": result.record.created_by}).encode()
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": body})

            app = ASGIMiddleware(pay, user=lambda scope: dict(scope["headers"])[b"x-user"].decode())
            scopes = []
            for i in range(6):
                scope = asgi_scope(headers={"X-User": f"cashier-{i}"})
                scope["path"] = f"/fee/{i}"
                scopes.append(scope)
            return list(await asyncio.gather(*(call_asgi(app, s) for s in scopes)))
        finally:
            await agov.close()

    results = asyncio.run(go())
    assert [json.loads(body)["created_by"] for _, _, body in results] == [
        f"cashier-{i}" for i in range(6)
    ]


# --- WSGI ------------------------------------------------------------------------------------


def echo_context_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(context_dict()).encode()]


def wsgi_environ(**headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
    }
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return environ


def call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    started: list[Any] = []
    result = app(environ, lambda status, headers, *exc: started.append((status, headers)))
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return started[0][0], dict(started[0][1]), body


def test_wsgi_fills_the_context_and_echoes_the_request_id() -> None:
    app = WSGIMiddleware(
        echo_context_wsgi,
        user=lambda environ: environ.get("REMOTE_USER"),
        service="FeesGateway",
        trusted_proxies=["127.0.0.1"],
    )
    environ = wsgi_environ(
        USER_AGENT="curl/8", X_REQUEST_ID="abc-1", X_FORWARDED_FOR="9.9.9.9, 198.51.100.3"
    )
    environ["REMOTE_USER"] = "amina"
    status, headers, body = call_wsgi(app, environ)
    assert status == "200 OK"
    assert json.loads(body) == {
        "user": "amina",
        "service": "FeesGateway",
        "ip": "198.51.100.3",
        "user_agent": "curl/8",
        "request_id": "abc-1",
    }
    assert headers["X-Request-ID"] == "abc-1"
    assert current_context() == EMPTY_CONTEXT


def test_wsgi_lazy_body_and_close_run_in_the_request_context() -> None:
    """A generator body runs after the app returned: it still sees the request's context, and
    the caller's context never changes."""
    seen: list[Any] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            seen.append(("iter", current_context().user))
            yield b"a"
            seen.append(("next", current_context().user))
            yield b"b"

        def close(self) -> None:
            seen.append(("close", current_context().user))

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    with pygov.context(user="outer"):
        _, _, body = call_wsgi(WSGIMiddleware(app, user=lambda e: "inner"), wsgi_environ())
        assert current_context().user == "outer"
    assert body == b"ab"
    assert seen == [("iter", "inner"), ("next", "inner"), ("close", "inner")]


def test_wsgi_exception_leaves_no_context() -> None:
    def failing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        assert current_context().user == "chen"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        WSGIMiddleware(failing, user=lambda e: "chen")(wsgi_environ(), lambda *a: None)
    assert current_context() == EMPTY_CONTEXT


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_wsgi_concurrent_requests_through_a_real_threaded_server(sqlite_gov: Any) -> None:
    """A real HTTP server (wsgiref, one thread per request), concurrent clients, and pygov
    writes inside the requests: each request sees and records only its own user."""
    count = 12
    barrier = threading.Barrier(count, timeout=30)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        before = context_dict()
        barrier.wait()  # every request is being handled at once here
        result = sqlite_gov.idempotency.check_and_record("visit", environ["PATH_INFO"])
        after = context_dict()
        start_response("200 OK", [("Content-Type", "application/json")])
        body = {"before": before, "after": after, "created_by": result.record.created_by}
        return [json.dumps(body).encode()]

    wrapped = WSGIMiddleware(
        app,
        user=lambda environ: environ.get("HTTP_X_USER"),
        service="web",
        trusted_proxies=["127.0.0.1"],
    )
    server = make_server(
        "127.0.0.1", 0, wrapped, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:

        def request(i: int) -> tuple[dict[str, Any], str]:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
            try:
                conn.request(
                    "GET",
                    f"/page/{i}",
                    headers={
                        "X-User": f"user-{i}",
                        "X-Forwarded-For": f"198.51.100.{i}",
                        "User-Agent": f"client-{i}",
                    },
                )
                response = conn.getresponse()
                return json.loads(response.read()), response.getheader("X-Request-ID") or ""
            finally:
                conn.close()

        results = run_threads(count, request)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert not [r for r in results if isinstance(r, BaseException)]
    request_ids = set()
    for i, (body, request_id) in enumerate(results):
        assert body["before"] == body["after"]
        assert body["after"]["user"] == f"user-{i}"
        assert body["after"]["ip"] == f"198.51.100.{i}"
        assert body["after"]["user_agent"] == f"client-{i}"
        assert body["after"]["service"] == "web"
        assert body["after"]["request_id"] == request_id
        assert body["created_by"] == f"user-{i}"
        request_ids.add(request_id)
    assert len(request_ids) == count
