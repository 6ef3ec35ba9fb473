"""The HTTP transport under httpx: aiohttp's connections and C parser (``httpx-aiohttp``).

httpx stays the interface (``httpx.AsyncClient``, its requests, responses and errors); the
requests go out through aiohttp, whose C HTTP parser and connection pool cost a fraction of
httpcore's CPU per response (``docs/performance.md``). :func:`aiohttp_transport` makes one for a
client: verified TLS (``SSL_CERT_FILE`` honoured, as httpx does), proxies from the environment, no
cookie jar (checks stay independent), and bodies left as sent (``monitor.fetch`` inflates them in
bounded steps). aiohttp's ``trust_env`` looks the proxy variables and ``~/.netrc`` up again in a
worker thread for every request (two thread hops, a file lookup); the transport turns it on only
when the process started with a proxy variable set, so a daemon without a proxy pays nothing.
The transport maps aiohttp's errors to httpx's, raised *from* aiohttp's own; the callers translate
both at their boundary (``monitor.fetch``, ``monitor.sinks._http``).

:class:`CookielessClient` is the ``httpx.AsyncClient`` the daemon sends with: it keeps no cookie
(a check never depends on an earlier one, an alert never carries a receiver's session), and it
does not even look at a response's ``Set-Cookie``. httpx hands every response to its cookie jar
through a ``urllib.request.Request`` built for it, and a jar that refuses every cookie still pays
for that: ~10 % of an unchanged check's CPU (``docs/performance.md``).
"""

from __future__ import annotations

import urllib.request
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = ["LIMITS", "CookielessClient", "aiohttp_transport"]

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)
#: the schemes whose ``*_PROXY`` variable aiohttp's ``trust_env`` honours
_PROXIED = ("http", "https", "ws", "wss")


def proxies_configured() -> bool:
    """Does the environment name a proxy aiohttp would use (``HTTP_PROXY``, ``https_proxy`` ...)?"""
    return any(urllib.request.getproxies_environment().get(scheme) for scheme in _PROXIED)


def aiohttp_transport(limits: httpx.Limits = LIMITS) -> httpx.AsyncBaseTransport:
    """A new transport; its aiohttp session is made on first use, inside the running loop."""
    tls = httpx.create_ssl_context(verify=True, trust_env=True)
    trust_env = proxies_configured()

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=limits.max_connections or 100,
                keepalive_timeout=limits.keepalive_expiry or 30.0,
                ssl=tls,
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=trust_env,
            auto_decompress=False,
        )

    # the same context: httpx-aiohttp would load the CA bundle once more for one of its own
    return _AiohttpTransport(client=session, limits=limits, verify=tls)


class _AiohttpTransport(AiohttpTransport):
    """The aiohttp transport, sent the URL without its userinfo: httpx has turned that into the
    ``Authorization`` header already, and aiohttp refuses both at once."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.userinfo:
            request.url = request.url.copy_with(username=None, password=None)
        return await super().handle_async_request(request)


class _NoCookies(httpx.Cookies):
    """Cookies that stay empty: a response's are not read."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that keeps no cookie (see the module): its ``cookies`` are always
    empty, so no request carries one unless its own headers do."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("cookies"):
            raise ValueError("CookielessClient: it keeps no cookies")
        super().__init__(**kwargs)
        self._empty = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._empty

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise AttributeError("CookielessClient: it keeps no cookies")
