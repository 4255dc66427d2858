"""HTTP_GET / SSL_GET against real HTTP and HTTPS servers whose status and body change."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import pytest

from healthcheck.checkers import http
from healthcheck.model import HttpCheckSpec, UrlSpec


@dataclass
class Site:
    """What the test server answers; every request head is recorded."""

    status: int = 200
    body: bytes = b"hello\n"
    framing: str = "length"  # "length" | "close" | "chunked"
    requests: list[str] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    port: int = 0


async def _serve(site: Site, ssl_ctx: ssl.SSLContext | None) -> asyncio.Server:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            head = await r.readuntil(b"\r\n\r\n")
            site.requests.append(head.decode())
            hdr = f"HTTP/1.1 {site.status} X\r\nServer: test\r\n"
            if site.framing == "length":
                w.write(f"{hdr}Content-Length: {len(site.body)}\r\n\r\n".encode() + site.body)
            elif site.framing == "chunked":
                w.write(f"{hdr}Transfer-Encoding: chunked\r\n\r\n".encode())
                for i in range(0, len(site.body), 3):
                    chunk = site.body[i:i + 3]
                    w.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                w.write(b"0\r\n\r\n")
            else:
                w.write(f"{hdr}\r\n".encode() + site.body)
            await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    return await asyncio.start_server(handler, "127.0.0.4", site.port, ssl=ssl_ctx)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "crt.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-days", "1", "-subj", "/CN=rs.test"],
                   check=True, capture_output=True)
    return key, crt


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    server = await _serve(s, None)
    s.port = server.sockets[0].getsockname()[1]
    yield s
    server.close()
    await server.wait_closed()


def _spec(port: int, *urls: UrlSpec, **kw: object) -> HttpCheckSpec:
    return HttpCheckSpec(connect_ip=ip_address("127.0.0.4"), connect_port=port,
                         connect_timeout=2.0, urls=urls or (UrlSpec(),), **kw)  # type: ignore[arg-type]


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


async def test_status_ranges_follow_the_server(site: Site) -> None:
    url = UrlSpec(path="/health", status_codes=((200, 200), (300, 302)))
    spec = _spec(site.port, url)
    assert (await http.probe(spec)).ok
    site.status = 503
    res = await http.probe(spec)
    assert not res.ok and res.detail == "/health: status 503"
    site.status = 302
    assert (await http.probe(spec)).ok
    site.status = 204  # outside both ranges
    assert not (await http.probe(spec)).ok
    assert site.requests[0].startswith("GET /health HTTP/1.0\r\n")
    assert "User-Agent: KeepAliveClient\r\n" in site.requests[0]
    assert f"Host: 127.0.0.4:{site.port}\r\n" in site.requests[0]
    assert "Connection" not in site.requests[0]


async def test_default_status_is_2xx(site: Site) -> None:
    spec = _spec(site.port)
    site.status = 299
    assert (await http.probe(spec)).ok
    site.status = 404
    assert not (await http.probe(spec)).ok


@pytest.mark.parametrize("framing", ["length", "close", "chunked"])
async def test_digest_follows_the_body(site: Site, framing: str) -> None:
    site.framing = framing
    v1 = b"version 1 of the page\n"
    site.body = v1
    spec = _spec(site.port, UrlSpec(path="/", digest=md5(v1).upper()),
                 http_protocol="1.1")
    assert (await http.probe(spec)).ok, framing
    site.body = b"version 2 of the page\n"
    res = await http.probe(spec)
    assert not res.ok
    assert res.detail == f"/: digest {md5(site.body)} != {md5(v1)}"
    assert "Connection: close\r\n" in site.requests[0]
    assert site.requests[0].startswith("GET / HTTP/1.1\r\n")


async def test_every_url_must_pass_and_virtualhost_is_sent(site: Site) -> None:
    spec = _spec(site.port, UrlSpec(path="/a"), UrlSpec(path="/b", virtualhost="b.example"),
                 virtualhost="www.example", http_protocol="1.0C")
    assert (await http.probe(spec)).ok
    assert "Host: www.example\r\n" in site.requests[0]
    assert "Host: b.example\r\n" in site.requests[1]
    assert "Connection: close\r\n" in site.requests[0]
    assert site.requests[1].startswith("GET /b HTTP/1.0\r\n")
    site.status = 500
    res = await http.probe(spec)
    assert not res.ok and res.detail == "/a: status 500"


async def test_down_server_and_garbage_fail(site: Site) -> None:
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        w.close()

    server = await asyncio.start_server(garbage, "127.0.0.4", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        res = await http.probe(_spec(port))
        assert not res.ok and "bad status line" in res.detail
    finally:
        server.close()
        await server.wait_closed()
    res = await http.probe(_spec(port))
    assert not res.ok and res.detail == "/: Connection refused"


async def test_ssl_get_with_and_without_sni(cert: tuple[Path, Path]) -> None:
    key, crt = cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    site = Site(body=b"secure\n")

    def sni_cb(sock: ssl.SSLObject, name: str | None, c: ssl.SSLContext) -> None:
        site.sni.append(name)

    ctx.sni_callback = sni_cb
    server = await _serve(site, ctx)
    site.port = server.sockets[0].getsockname()[1]
    try:
        url = UrlSpec(path="/s", digest=md5(b"secure\n"))
        spec = _spec(site.port, url, ssl=True, virtualhost="secure.example")
        assert (await http.probe(spec)).ok
        assert (await http.probe(_spec(site.port, url, ssl=True, virtualhost="secure.example",
                                       enable_sni=True))).ok
        assert site.sni == [None, "secure.example"]
        site.status = 500
        assert not (await http.probe(spec)).ok
        # plain HTTP to a TLS port, and TLS to a plain port, both fail
        assert not (await http.probe(_spec(site.port, url))).ok
    finally:
        server.close()
        await server.wait_closed()


async def test_ssl_to_plain_http_server_fails(site: Site) -> None:
    res = await http.probe(_spec(site.port, ssl=True))
    assert not res.ok


async def test_regex_and_regex_no_match(site: Site) -> None:
    site.body = b"<html>status: ready</html>"
    assert (await http.probe(_spec(site.port, UrlSpec(regex=r"status: (ready|ok)")))).ok
    assert not (await http.probe(_spec(site.port, UrlSpec(regex=r"status: (ready|ok)",
                                                          regex_no_match=True)))).ok
    site.body = b"<html>status: draining</html>"
    res = await http.probe(_spec(site.port, UrlSpec(regex=r"status: (ready|ok)")))
    assert not res.ok and res.detail == "/: regex 'status: (ready|ok)' not matched"


def test_build_request_and_parse_response() -> None:
    spec = _spec(80, http_protocol="1.0")
    assert http.build_request(spec, UrlSpec(path="/x")) == (
        b"GET /x HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.4\r\n\r\n")
    resp = http.parse_response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\nbody")
    assert (resp.status, resp.headers, resp.body) == (404, {"a": "b"}, b"body")
