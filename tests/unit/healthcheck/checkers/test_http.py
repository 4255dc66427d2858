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
    peers: list[str] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)  # path -> body (else ``body``)
    port: int = 0


async def _serve(site: Site, ssl_ctx: ssl.SSLContext | None) -> asyncio.Server:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            head = await r.readuntil(b"\r\n\r\n")
            site.requests.append(head.decode())
            site.peers.append(w.get_extra_info("peername")[0])
            body = site.bodies.get(head.split()[1].decode(), site.body)
            hdr = f"HTTP/1.1 {site.status} X\r\nServer: test\r\n"
            if site.framing == "length":
                w.write(f"{hdr}Content-Length: {len(body)}\r\n\r\n".encode() + body)
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


async def test_every_url_is_checked_with_its_own_path_digest_and_codes(site: Site) -> None:
    site.bodies = {"/a": b"alpha", "/b": b"beta"}
    spec = _spec(site.port, UrlSpec(path="/a", digest=md5(b"alpha")),
                 UrlSpec(path="/b", digest=md5(b"beta"), status_codes=((200, 200),)),
                 UrlSpec(path="/c", regex="^gamma$"))
    site.bodies["/c"] = b"gamma"
    res = await http.probe(spec)
    assert res.ok and res.detail == "3 url(s) ok"
    assert [r.split()[1] for r in site.requests] == ["/a", "/b", "/c"]
    # only the second url's body changes: the checker fails on it
    site.bodies["/b"] = b"beta v2"
    res = await http.probe(spec)
    assert not res.ok and res.detail.startswith("/b: digest ")
    # the last url's regex stops matching
    site.bodies["/b"] = b"beta"
    site.bodies["/c"] = b"gamma!"
    res = await http.probe(spec)
    assert not res.ok and res.detail == "/c: regex '^gamma$' not matched"


async def test_http_protocol_1_1_and_connect_options(site: Site) -> None:
    # connect_ip/connect_port are what the probe connects to, bindto its source address
    spec = _spec(site.port, http_protocol="1.1", bindto=ip_address("127.0.0.44"))
    assert (await http.probe(spec)).ok
    head = site.requests[-1]
    assert head.startswith("GET / HTTP/1.1\r\n") and "Connection: close\r\n" in head
    assert f"Host: 127.0.0.4:{site.port}\r\n" in head  # non-default port in Host
    assert site.peers[-1] == "127.0.0.44"
    spec = _spec(site.port, http_protocol="1.0")
    assert (await http.probe(spec)).ok
    assert site.requests[-1].startswith("GET / HTTP/1.0\r\n")
    assert "Connection:" not in site.requests[-1]
    assert site.peers[-1] != "127.0.0.44"  # no bindto: the kernel picks the source
    # another port on the same address: refused
    res = await http.probe(_spec(1))
    assert not res.ok and res.detail == "/: Connection refused"


async def test_regex_options_and_offsets(site: Site) -> None:
    site.body = b"HEADER\nStatus: READY\n"

    async def ok(**kw: object) -> bool:
        return (await http.probe(_spec(site.port, UrlSpec(**kw)))).ok  # type: ignore[arg-type]

    assert not await ok(regex="status: ready")
    assert await ok(regex="status: ready", regex_options=("caseless",))
    assert not await ok(regex="^Status", regex_options=())
    assert await ok(regex="^Status", regex_options=("multiline",))
    assert await ok(regex="HEADER.Status", regex_options=("dotall",))
    assert await ok(regex="Status: \\s READY  # comment", regex_options=("extended",))
    # firstline: the match must start in the first line
    assert not await ok(regex="Status", regex_options=("firstline",))
    assert await ok(regex="HEAD", regex_options=("firstline",))
    # offsets: searched from min_offset; a match must start by max_offset
    assert await ok(regex="Status", regex_min_offset=7, regex_max_offset=7)
    assert not await ok(regex="Status", regex_max_offset=6)
    assert not await ok(regex="HEADER", regex_min_offset=1)
    site.body = "état: prêt".encode()
    assert await ok(regex="^état: prêt$", regex_options=("utf",))
    assert not await ok(regex="^état: prêt$")  # latin-1 decoding by default


def test_build_request_and_parse_response() -> None:
    spec = _spec(80, http_protocol="1.0")
    assert http.build_request(spec, UrlSpec(path="/x")) == (
        b"GET /x HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.4\r\n\r\n")
    resp = http.parse_response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\nbody")
    assert (resp.status, resp.headers, resp.body) == (404, {"a": "b"}, b"body")
