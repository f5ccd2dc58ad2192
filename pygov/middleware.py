"""Request middleware: one governance context per HTTP request, for ASGI and WSGI apps.

Wrap the application once::

    app = pygov.middleware.ASGIMiddleware(app, user=lambda scope: scope.get("user_name"),
                                          service="FeesGateway", trusted_proxies=["10.0.0.0/8"])
    app = pygov.middleware.WSGIMiddleware(app, user=lambda environ: environ.get("REMOTE_USER"))

For each request the middleware sets the governance context (``pygov.current_context()``):
``user`` from your callable (given the ASGI scope or the WSGI environ; for ASGI it may be a
coroutine function), ``service`` as configured, ``ip`` the client address, ``user_agent`` and
``request_id`` (the ``X-Request-ID`` header when it is sane, a new UUID otherwise; it is echoed
in the response). Every pygov call and every audited write made while handling the request then
names that user, address and request. The context is removed when the request ends, also when
the app raises, and concurrent requests never see each other's.

The client IP: the peer address, unless the peer is one of ``trusted_proxies`` (addresses or
networks); then ``X-Forwarded-For`` is read from the right, skipping trusted hops, and the first
untrusted address is the client. Without trusted proxies the header is ignored, since any client
can send it.
"""

from __future__ import annotations

import contextvars
import inspect
import ipaddress
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

from pygov.context import EMPTY_CONTEXT, GovernanceContext, make_context, reset_context, set_context

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
AppT = TypeVar("AppT")

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII, no spaces
_MAX_USER_AGENT = 1000  # the context's field limit


def parse_ip(text: str | None) -> IPAddress | None:
    """An address from a peer or a forwarded hop (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``)."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):  # [v6]:port
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def networks(trusted: Iterable[str | IPNetwork | IPAddress]) -> tuple[IPNetwork, ...]:
    """Trusted proxies as networks (a single address is a /32 or /128)."""
    result = []
    for item in trusted:
        if isinstance(item, IPNetwork):
            result.append(item)
        else:
            result.append(ipaddress.ip_network(str(item), strict=False))
    return tuple(result)


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted: tuple[IPNetwork, ...]
) -> str | None:
    """The client's address, honouring ``X-Forwarded-For`` only behind trusted proxies."""
    address = parse_ip(peer)
    if address is None:
        return None

    def is_trusted(a: IPAddress) -> bool:
        return any(a.version == n.version and a in n for n in trusted)

    if not is_trusted(address) or not forwarded_for:
        return str(address)
    for hop in reversed(forwarded_for.split(",")):
        candidate = parse_ip(hop)
        if candidate is None:
            # Garbage from beyond our proxies: the last address they vouched for is the client.
            break
        address = candidate
        if not is_trusted(address):
            break
    return str(address)


class _Settings:
    """What both middlewares share: how a request becomes a governance context."""

    def __init__(
        self,
        user: Callable[[Any], Any] | None,
        service: str | None,
        trusted_proxies: Iterable[str | IPNetwork | IPAddress],
        request_id_header: str,
        echo_request_id: bool,
    ) -> None:
        self.user = user
        self.service = service
        self.trusted = networks(trusted_proxies)
        #: As configured (for the response) and lower-cased (for lookups).
        self.request_id_name = request_id_header
        self.request_id_header = request_id_header.lower()
        self.echo_request_id = echo_request_id

    def context(self, user: Any, peer: str | None, headers: Mapping[str, str]) -> GovernanceContext:
        request_id = headers.get(self.request_id_header, "").strip()
        if not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        agent = headers.get("user-agent", "").replace("\x00", "")[:_MAX_USER_AGENT] or None
        return make_context(
            EMPTY_CONTEXT,
            user=None if user is None else str(user),
            service=self.service,
            ip=client_ip(peer, headers.get("x-forwarded-for"), self.trusted),
            user_agent=agent,
            request_id=request_id,
        )


class _Middleware(Generic[AppT]):
    """The options both middlewares take."""

    def __init__(
        self,
        app: AppT,
        *,
        user: Callable[[Any], Any] | None = None,
        service: str | None = None,
        trusted_proxies: Iterable[str | IPNetwork | IPAddress] = (),
        request_id_header: str = "X-Request-ID",
        echo_request_id: bool = True,
    ) -> None:
        """``user`` gets the ASGI scope or the WSGI environ and returns the user name (or None);
        ``service`` names your application; ``trusted_proxies`` are addresses or networks whose
        ``X-Forwarded-For`` is believed; ``echo_request_id`` adds the request id header to
        responses that do not set it."""
        self.app: AppT = app
        self.settings = _Settings(
            user, service, trusted_proxies, request_id_header, echo_request_id
        )


class ASGIMiddleware(_Middleware[ASGIApp]):
    """Governance context per HTTP/WebSocket request for an ASGI 3 application."""

    async def _user(self, scope: Scope) -> Any:
        if self.settings.user is None:
            return None
        value = self.settings.user(scope)
        return await value if inspect.isawaitable(value) else value

    def _echoing(self, send: Send, request_id: str) -> Send:
        """``send``, adding the request id header to the response unless the app set one."""
        header = self.settings.request_id_header.encode("latin-1")
        value = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message.get("type") == "http.response.start":
                existing = list(message.get("headers") or [])
                if not any(bytes(name).lower() == header for name, _ in existing):
                    message = {**message, "headers": [*existing, (header, value)]}
            await send(message)

        return send_with_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in {"http", "websocket"}:
            await self.app(scope, receive, send)  # lifespan: no request, no context
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers") or ():
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            # Repeated headers combine as HTTP says (X-Forwarded-For hops stay in order).
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        client = scope.get("client")
        peer = str(client[0]) if client else None
        ctx = self.settings.context(await self._user(scope), peer, headers)
        if scope["type"] == "http" and self.settings.echo_request_id:
            send = self._echoing(send, ctx.request_id or "")
        token = set_context(ctx)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_context(token)


class _RequestIterable:
    """The app's response body, iterated and closed inside the request's own context."""

    def __init__(self, result: Iterable[bytes], run: Callable[..., Any]) -> None:
        self._result = result
        self._run = run
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._run(iter, self._result)
        chunk: bytes = self._run(next, self._iterator)
        return chunk

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            self._run(close)


class WSGIMiddleware(_Middleware[WSGIApp]):
    """Governance context per request for a WSGI application.

    The app, its response body (which a WSGI server may iterate after the app returned) and its
    ``close()`` all run in a context of their own, so the server's thread is never changed and
    nothing can leak into the next request it handles.
    """

    def _echoing(self, start_response: StartResponse, request_id: str) -> StartResponse:
        """``start_response``, adding the request id header unless the app set one."""
        name = self.settings.request_id_name
        lowered = self.settings.request_id_header

        def respond(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if not any(k.lower() == lowered for k, _ in headers):
                headers = [*headers, (name, request_id)]
            return start_response(status, headers, *exc_info)

        return respond

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        user = self.settings.user(environ) if self.settings.user is not None else None
        ctx = self.settings.context(user, environ.get("REMOTE_ADDR"), headers)
        run = contextvars.copy_context().run
        run(set_context, ctx)
        respond = start_response
        if self.settings.echo_request_id:
            respond = self._echoing(start_response, ctx.request_id or "")
        return _RequestIterable(run(self.app, environ, respond), run)


__all__ = ["ASGIMiddleware", "WSGIMiddleware", "client_ip", "networks", "parse_ip"]
