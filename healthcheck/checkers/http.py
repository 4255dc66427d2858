"""HTTP_GET and SSL_GET: every url must answer with an accepted status (and body digest).

One connection per url (keepalived closes after each), request as keepalived sends it
(``GET path HTTP/1.0``, ``Host``, ``User-Agent: KeepAliveClient``; ``Connection: close`` for
1.0C and 1.1).  The body is read to EOF (or Content-Length, chunked decoded), at most
``max_body`` bytes, its MD5 compared with ``digest`` and ``regex`` searched in it.  Every url
is checked on every probe (keepalived's ``fast_recovery`` behaviour).  SSL_GET does not verify the
certificate; ``enable_sni`` sends the virtualhost (else the address) as server name.
Each url is bounded by ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
import time
from functools import cache

from healthcheck.checkers.base import connect_socket, describe, fail, ok
from healthcheck.model import CheckResult, HttpCheckSpec, UrlSpec

__all__ = ["HttpResponse", "build_request", "parse_response", "probe", "regex_found"]


class HttpError(Exception):
    pass


@cache
def _ssl_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def build_request(spec: HttpCheckSpec, url: UrlSpec) -> bytes:
    host = url.virtualhost or spec.virtualhost or _host(spec)
    default_port = 443 if spec.ssl else 80
    if spec.connect_port != default_port and (url.virtualhost or spec.virtualhost) is None:
        host = f"{host}:{spec.connect_port}"
    version = "1.1" if spec.http_protocol == "1.1" else "1.0"
    lines = [f"GET {url.path} HTTP/{version}", "User-Agent: KeepAliveClient", f"Host: {host}"]
    if spec.http_protocol in ("1.0C", "1.1"):
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _host(spec: HttpCheckSpec) -> str:
    ip = spec.connect_ip
    return f"[{ip}]" if ip.version == 6 else str(ip)


class HttpResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


async def _read_response(reader: asyncio.StreamReader, max_body: int) -> HttpResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers = parse_head(head)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader, max_body)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > max_body:
            raise HttpError(f"body of {length} bytes exceeds {max_body}")
        body = await reader.readexactly(length)
    else:
        body = await reader.read(max_body + 1)
        while body and len(body) <= max_body:
            more = await reader.read(max_body + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > max_body:
            raise HttpError(f"body exceeds {max_body} bytes")
    return HttpResponse(status, headers, body)


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return bytes(body)
        if len(body) + size > max_body:
            raise HttpError(f"body exceeds {max_body} bytes")
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError(f"bad status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def parse_response(data: bytes) -> HttpResponse:
    """Parse a complete response held in memory (tests, tools)."""
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = parse_head(head + b"\r\n\r\n")
    return HttpResponse(status, headers, body)


def _check(url: UrlSpec, resp: HttpResponse) -> str | None:
    if not any(lo <= resp.status <= hi for lo, hi in url.status_codes):
        return f"{url.path}: status {resp.status}"
    if url.digest is not None:
        got = hashlib.md5(resp.body, usedforsecurity=False).hexdigest()
        if got != url.digest.lower():
            return f"{url.path}: digest {got} != {url.digest.lower()}"
    if url.regex is not None:
        found = regex_found(url, resp.body)
        if found == url.regex_no_match:
            return f"{url.path}: regex {url.regex!r} {'matched' if found else 'not matched'}"
    return None


_FLAGS = {"caseless": re.IGNORECASE, "multiline": re.MULTILINE, "dotall": re.DOTALL,
          "extended": re.VERBOSE}


def regex_found(url: UrlSpec, body: bytes) -> bool:
    """Whether ``url.regex`` matches ``body`` under its options and offsets."""
    assert url.regex is not None
    opts = url.regex_options
    text = body.decode("utf-8", "replace") if "utf" in opts else body.decode("latin-1")
    m = _regex(url.regex, opts).search(text, url.regex_min_offset)
    if m is None:
        return False
    if url.regex_max_offset is not None and m.start() > url.regex_max_offset:
        return False
    if "firstline" in opts:
        newline = text.find("\n")
        return newline < 0 or m.start() <= newline
    return True


@cache
def _regex(pattern: str, options: tuple[str, ...] = ()) -> re.Pattern[str]:
    flags = 0
    for name in options:
        flags |= _FLAGS.get(name, 0)
    return re.compile(pattern, flags)


async def _fetch(spec: HttpCheckSpec, url: UrlSpec) -> HttpResponse:
    sock = await connect_socket(spec.connect_ip, spec.connect_port, bindto=spec.bindto,
                                bind_port=spec.bind_port, bind_if=spec.bind_if,
                                fwmark=spec.fwmark)
    kwargs: dict[str, object] = {}
    if spec.ssl:
        sni = (url.virtualhost or spec.virtualhost or str(spec.connect_ip)) if spec.enable_sni \
            else None
        kwargs = {"ssl": _ssl_context(), "server_hostname": sni or ""}
    try:
        reader, writer = await asyncio.open_connection(sock=sock, **kwargs)  # type: ignore[arg-type]
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(build_request(spec, url))
        await writer.drain()
        return await _read_response(reader, spec.max_body)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


async def probe(spec: HttpCheckSpec) -> CheckResult:
    start = time.monotonic()
    for url in spec.urls:
        try:
            async with asyncio.timeout(spec.connect_timeout):
                resp = await _fetch(spec, url)
        except TimeoutError:
            return fail(f"{url.path}: timed out after {spec.connect_timeout:g}s", start)
        except asyncio.IncompleteReadError:
            return fail(f"{url.path}: connection closed early", start)
        except (HttpError, ValueError, asyncio.LimitOverrunError) as exc:
            return fail(f"{url.path}: bad response: {exc}", start)
        except ssl.SSLError as exc:
            return fail(f"{url.path}: TLS error: {exc.reason or exc}", start)
        except OSError as exc:
            return fail(f"{url.path}: {describe(exc)}", start)
        reason = _check(url, resp)
        if reason is not None:
            return fail(reason, start)
    return ok(f"{len(spec.urls)} url(s) ok", start)
