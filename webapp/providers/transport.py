"""HTTP transport for adapters: pooled sessions, an SSRF-guarded variant, and mapping of failures to
UpstreamFailure. Redirects are never followed; keys never reach an exception message."""

from __future__ import annotations

import http.client
import http.cookiejar
import ipaddress
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import connection as urllib3_connection

from webapp.providers.base import Target, UpstreamFailure, UpstreamStream
from webapp.providers.sse import SSEError, SSEEvent, iter_sse
from webapp.redact import MIN_SECRET, StreamRedactor, held_secrets, redact, redactor_for

USER_AGENT = "switchboard-gateway/1"
POOL_HOSTS = 64  # distinct upstream hosts kept in the pool manager
POOL_SIZE = 64  # idle keep-alive connections kept per host
MAX_JSON_BYTES = 32 * 1024 * 1024  # a chat completion is far smaller; this only stops a hostile upstream
MAX_ERROR_BYTES = 64 * 1024
MAX_DRAIN_BYTES = 64 * 1024
READ_SIZE = 16 * 1024

# ---------------------------------------------------------------------------------------------------------------
# Address policy

_BLOCKED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/8", "100::/64", "2001::/23", "2001:db8::/32", "64:ff9b:1::/48", "fc00::/7", "fe80::/10", "fec0::/10",
    "ff00::/8",
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form stands for (mapped ::ffff:a.b.c.d, 6to4, NAT64), if any."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _is_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address):
        # ::ffff:7f00:1 is 127.0.0.1: judge the IPv4 address it reaches, not the IPv6 spelling.
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            return _is_public(embedded)
    if any(addr in net for net in _BLOCKED_NETWORKS if net.version == addr.version):
        return False
    return not (addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified) and addr.is_global


def is_public_address(ip: str) -> bool:
    """True only for a globally routable unicast address. Anything unparsable is not public."""
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return _is_public(addr)


def _resolve(host: str, port: int) -> list[str]:
    """All addresses `host` resolves to (a module function so tests can simulate DNS answers)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def check_base_url(url: str) -> None:
    """Save-time check of a user-supplied base URL: http(s), no credentials, and every address the host
    resolves to is public. Raises ValueError with a message fit to show the user."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError("The base URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValueError("The base URL has no host name.")
    if parts.username is not None or parts.password is not None:
        raise ValueError("The base URL must not contain a user name or password; put the key in the key field.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("The base URL has an invalid port.") from None
    try:
        addresses = _resolve(parts.hostname, port)
    except (OSError, UnicodeError):
        raise ValueError(f"The host {parts.hostname!r} could not be resolved.") from None
    if not addresses:
        raise ValueError(f"The host {parts.hostname!r} could not be resolved.")
    if not all(is_public_address(a) for a in addresses):
        # The address itself is not shown: it would let a user map our internal DNS.
        raise ValueError(f"The host {parts.hostname!r} resolves to a private, loopback, link-local or otherwise "
                         "non-public address; only public addresses are allowed.")


def _blocked(host: str) -> UpstreamFailure:
    # One message for every refusal (whatever the port, open or closed, and whatever the address): nothing here
    # may tell a user what is listening inside our network.
    return UpstreamFailure("blocked_address", f"refused to connect to {host}: it is not a public address",
                           retryable=False)


Resolver = Callable[[str, int], list[str]]


def pinned_addresses(host: str, port: int, resolve: Resolver | None = None,
                     allowed: Callable[[str], bool] = is_public_address) -> list[str]:
    """Resolve `host` once and return its addresses, to be connected to as they are (no second lookup, so a
    DNS answer that changes afterwards, i.e. rebinding, cannot redirect the connection). Every address must be
    allowed (public), otherwise UpstreamFailure("blocked_address") before any packet is sent; a resolution
    failure or an empty answer fails closed with UpstreamFailure("connect")."""
    try:
        answers = (resolve or _resolve)(host, port)
    except (OSError, UnicodeError, ValueError):
        answers = []
    addresses = list(dict.fromkeys(a.split("%", 1)[0] for a in answers))
    if not addresses:
        raise UpstreamFailure("connect", f"could not resolve the host {host}", retryable=True)
    if not all(allowed(a) for a in addresses):
        raise _blocked(host)
    return addresses


# ---------------------------------------------------------------------------------------------------------------
# Guarded connections: the host is resolved once, every address is checked, and the socket is connected to a
# checked address (pinned), so nothing can change between the check and the connect. The connection keeps the
# host name for the Host header, TLS SNI and certificate verification. The connected peer is checked again.

class _GuardMixin:
    _dns_host: str
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    # Seams for tests (a resolver that answers for a made-up name, a policy that admits loopback).
    resolve: Resolver | None = None
    allowed: Callable[[str], bool] = staticmethod(is_public_address)

    def _new_conn(self) -> socket.socket:
        addresses = pinned_addresses(self._dns_host, self.port, self.resolve, self.allowed)
        error: OSError | None = None
        for ip in addresses:
            try:
                # An IP literal: getaddrinfo inside create_connection does no DNS lookup.
                sock = urllib3_connection.create_connection(
                    (ip, self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options)
            except TimeoutError as exc:
                raise urllib3.exceptions.ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from exc
            except OSError as exc:
                error = exc
                continue
            check_peer(sock, self._dns_host, self.allowed)
            return sock
        raise urllib3.exceptions.NewConnectionError(self, f"Failed to establish a new connection: {error}")


def check_peer(sock: socket.socket, host: str, allowed: Callable[[str], bool] = is_public_address) -> None:
    """Close `sock` and raise UpstreamFailure("blocked_address") unless its peer is a public address."""
    try:
        peer = str(sock.getpeername()[0])
    except OSError:
        peer = ""
    if not allowed(peer):
        sock.close()
        raise _blocked(host)


class _GuardedHTTPConnection(_GuardMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardMixin, HTTPSConnection):
    pass


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPConnectionPool,
                                                   "https": _GuardedHTTPSConnectionPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # Through a proxy the connected peer is the proxy, so the guard would be meaningless.
        raise UpstreamFailure("blocked_address", "proxies are not allowed for guarded upstreams")


def build_session(*, guarded: bool) -> requests.Session:
    """A pooled session. Environment proxies and .netrc are ignored (trust_env off) and cookies are never
    stored, so one user's upstream cannot plant state that reaches another user's request."""
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.headers["User-Agent"] = USER_AGENT
    adapter_cls = _GuardedAdapter if guarded else HTTPAdapter
    adapter = adapter_cls(pool_connections=POOL_HOSTS, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_sessions: dict[bool, requests.Session] = {}
_sessions_lock = threading.Lock()


def session_for(target: Target) -> requests.Session:
    """The shared session for a target: the guarded one unless the target allows private addresses."""
    guarded = not target.allow_private
    with _sessions_lock:
        session = _sessions.get(guarded)
        if session is None:
            session = _sessions[guarded] = build_session(guarded=guarded)
        return session


# ---------------------------------------------------------------------------------------------------------------
# URLs and error bodies

def join_url(base_url: str, path: str) -> str:
    """`base_url` + `/path`, keeping any query string of the base (e.g. an Azure api-version) at the end."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + path.lstrip("/"),
                       parts.query, ""))


def safe_url(url: str) -> str:
    """The URL without credentials, query string or fragment: the only form allowed in a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return urlunsplit((parts.scheme, host + (f":{port}" if port else ""), parts.path, "", ""))


def error_body(raw: bytes, status: int, secret: str | None) -> dict[str, Any]:
    """An OpenAI-shaped {"error": {...}} from any upstream error body (OpenAI or Anthropic shape, or text).
    Only message/type/code/param survive, strings are capped, and the key is redacted."""
    # The whole body is scrubbed first (key fragments in any case, known key shapes), then parsed and cut:
    # cutting first could leave half a key too short to recognise.
    text = redact(raw.decode("utf-8", errors="replace"), secret)
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    source: dict[str, Any] = {}
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict):
            source = inner
        elif isinstance(inner, str):
            source = {"message": inner}
        else:
            source = data
    out: dict[str, Any] = {}
    for name in ("message", "type", "code", "param"):
        value = source.get(name)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (str, int, float)):
            out[name] = redact(value, secret)[:1000] if isinstance(value, str) else value
    if not out.get("message"):
        snippet = " ".join(text.split())[:300] if data is None else ""
        out["message"] = snippet or f"upstream answered HTTP {status}"
    return {"error": out}


# ---------------------------------------------------------------------------------------------------------------
# Sending

def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps, outermost first: requests wraps urllib3 wraps the socket error."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in out):
        out.append(current)
        nxt = getattr(current, "reason", None) or current.__cause__ or current.__context__
        if nxt is None and current.args and isinstance(current.args[0], BaseException):
            nxt = current.args[0]
        current = nxt if isinstance(nxt, BaseException) else None
    return out


def _failure_from_request_error(exc: requests.RequestException, url: str) -> UpstreamFailure:
    """Map a requests exception (raised before a response) to UpstreamFailure. The original is not chained
    and its text is not used: it may carry a full URL, query string included, or a malformed header value."""
    where = safe_url(url)
    chain = _chain(exc)
    cause = type(chain[-1]).__name__
    connect_errors = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError)
    if isinstance(exc, requests.ConnectTimeout):
        return UpstreamFailure("connect", f"timed out connecting to {where}", retryable=True)
    if isinstance(exc, requests.ReadTimeout):
        return UpstreamFailure("timeout", f"timed out waiting for {where} to answer", retryable=True)
    if isinstance(exc, requests.exceptions.SSLError):
        return UpstreamFailure("connect", f"TLS failure talking to {where} ({cause})", retryable=True)
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return UpstreamFailure("connect", f"invalid upstream URL {where}", retryable=False)
    if isinstance(exc, requests.ConnectionError):
        if not any(isinstance(e, connect_errors) for e in chain) and \
                any(isinstance(e, urllib3.exceptions.ReadTimeoutError) for e in chain):
            return UpstreamFailure("timeout", f"timed out waiting for {where} to answer", retryable=True)
        # Refused, unreachable, DNS failure, or the peer closed before answering: nothing was served.
        return UpstreamFailure("connect", f"could not reach {where} ({cause})", retryable=True)
    return UpstreamFailure("protocol", f"request to {where} failed ({cause})", retryable=False)


def send(target: Target, method: str, url: str, *, headers: dict[str, str],
         json_body: dict[str, Any] | None = None) -> requests.Response:
    """Send one request and return the open 2xx response (body not yet read; the caller must close it).
    Raises UpstreamFailure for connect errors, timeouts, redirects and non-2xx answers."""
    held_secrets.add(target.api_key)  # so a log line that quotes this request is scrubbed of it too
    session = session_for(target)
    try:
        resp = session.request(method, url, headers=headers, json=json_body, stream=True,
                               allow_redirects=False, timeout=(target.connect_timeout, target.read_timeout))
    except UpstreamFailure:
        raise
    except requests.RequestException as exc:
        raise _failure_from_request_error(exc, url) from None
    if 200 <= resp.status_code < 300:
        return resp
    try:
        raise _status_failure(resp, target, url)
    finally:
        resp.close()


def _status_failure(resp: requests.Response, target: Target, url: str) -> UpstreamFailure:
    status = resp.status_code
    where = safe_url(url)
    if 300 <= status < 400:
        return UpstreamFailure("status", f"{where} answered with a redirect (HTTP {status}); redirects are not "
                               "followed", status=status, retryable=False,
                               error_body={"error": {"message": f"upstream redirected (HTTP {status})"}})
    try:
        raw = _read_capped(resp, MAX_ERROR_BYTES, target, url, truncate=True)
    except UpstreamFailure:
        raw = b""
    body = error_body(raw, status, target.api_key)
    detail = str(body["error"].get("message", ""))[:300]
    retryable = status == 429 or status >= 500
    return UpstreamFailure("status", f"{where} answered HTTP {status}: {detail}", status=status,
                           retryable=retryable, error_body=body)


def iter_body(resp: requests.Response, target: Target, url: str) -> Iterator[bytes]:
    """The response body as it arrives (read1: whatever is available, never waiting to fill a buffer).
    Read errors become UpstreamFailure ("timeout" or "protocol")."""
    raw = resp.raw
    try:
        while True:
            data = raw.read1(READ_SIZE, decode_content=True)
            if not data:
                return
            yield data
    except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
        raise UpstreamFailure("timeout", f"timed out reading from {safe_url(url)}", retryable=True) from None
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        raise UpstreamFailure("protocol", f"the response from {safe_url(url)} broke off ({type(exc).__name__})",
                              retryable=False) from None


def _read_capped(resp: requests.Response, limit: int, target: Target, url: str, *, truncate: bool = False) -> bytes:
    out = bytearray()
    for data in iter_body(resp, target, url):
        out += data
        if len(out) > limit:
            if truncate:
                return bytes(out[:limit])
            raise UpstreamFailure("protocol", f"the response from {safe_url(url)} is too large", retryable=False)
    return bytes(out)


def read_json(resp: requests.Response, target: Target, url: str) -> Any:
    """Read the whole (capped) body as JSON, then release the connection to the pool."""
    try:
        raw = _read_capped(resp, MAX_JSON_BYTES, target, url)
    finally:
        resp.close()
    try:
        data = json.loads(raw)
    except ValueError:
        raise UpstreamFailure("protocol", f"{safe_url(url)} answered with invalid JSON", retryable=False) from None
    return scrub_body(data, target)


def scrub_body(data: Any, target: Target) -> Any:
    """A parsed upstream answer with every fragment of the target's key replaced, in every string (content, tool
    arguments, id, model, object keys ...): an upstream that echoes the key must not hand it to the client."""
    if target.api_key is None or len(target.api_key) < MIN_SECRET:
        return data
    return redactor_for(target.api_key).redact_json(data)


def ensure_event_stream(resp: requests.Response, url: str) -> None:
    """Refuse (and close) a 2xx answer to a streaming request that came back as plain JSON. Failing at open
    time, before the gateway sent the client anything, still lets it fall back to another route."""
    if resp.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/json":
        resp.close()
        raise protocol_error(url, "answered a streaming request with plain JSON")


def protocol_error(url: str, message: str) -> UpstreamFailure:
    return UpstreamFailure("protocol", f"{safe_url(url)}: {message}", retryable=False)


# ---------------------------------------------------------------------------------------------------------------
# Streams

Translator = Callable[[Iterable[SSEEvent]], Iterator[dict[str, Any]]]


class ResponseStream(UpstreamStream):
    """An open SSE response turned into OpenAI chunk dicts by `translate`. Single use; close() is idempotent.
    The translator returns when the upstream signals the end ([DONE], message_stop); the rest of the body is
    then drained (bounded) so the connection can go back to the pool."""

    def __init__(self, resp: requests.Response, target: Target, url: str, translate: Translator) -> None:
        self._resp = resp
        self._target = target
        self._url = url
        self._translate = translate
        self._started = False
        self._closed = False
        self._scrub = StreamRedactor([target.api_key])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._started:
            raise RuntimeError("an UpstreamStream can be iterated only once")
        self._started = True
        return self._chunks()

    def _chunks(self) -> Iterator[dict[str, Any]]:
        try:
            try:
                chunks = self._translate(iter_sse(iter_body(self._resp, self._target, self._url)))
                if self._scrub:
                    chunks = map(self._scrub.chunk, chunks)
                yield from chunks
            except SSEError as exc:
                raise protocol_error(self._url, str(exc)) from None
            self._drain()
        finally:
            self.close()

    def _drain(self) -> None:
        # Normally only the chunked-encoding terminator is left; anything large means "just close".
        try:
            left = MAX_DRAIN_BYTES
            for data in iter_body(self._resp, self._target, self._url):
                left -= len(data)
                if left < 0:
                    return
        except UpstreamFailure:
            return

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._resp.close()

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ResponseStream {safe_url(self._url)}>"


def open_event_stream(target: Target, url: str, headers: dict[str, str], body: dict[str, Any],
                      translate: Callable[[Iterable[SSEEvent], str, str | None], Iterator[dict[str, Any]]]
                      ) -> ResponseStream:
    """POST a streaming request and return its SSE body translated into OpenAI chunks (every wire format)."""
    resp = send(target, "POST", url, headers=headers, json_body=body)
    ensure_event_stream(resp, url)
    return ResponseStream(resp, target, url, lambda events: translate(events, url, target.api_key))
