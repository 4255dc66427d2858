from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from ipaddress import IPv4Address
from pathlib import Path

from healthcheck.manager import CheckerManager
from healthcheck.model import (
    FileCheckSpec,
    HttpCheckSpec,
    MiscCheckSpec,
    SmtpCheckSpec,
    TcpCheckSpec,
)
from vrrpd.config.loader import load_text
from vrrpd.lvs_checks import SpecCache, health_specs, lvs_notify_fifo

CONF = """
global_defs {
    script_user nobody
}
track_file tf1 {
    file /run/weight1
    weight 3
}
virtual_server 10.0.0.1 80 {
    protocol TCP
    delay_loop 7
    quorum 2
    sorry_server 10.9.9.9 80
    real_server 10.1.0.1 8080 {
        weight 4
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 2
        }
        HTTP_GET {
            url {
                path /health
                status_code 200-204
            }
            connect_port 81
        }
    }
    real_server 10.1.0.2 80 {
        MISC_CHECK {
            misc_path "/usr/local/bin/check 10.1.0.2"
            misc_dynamic
        }
        FILE_CHECK {
            track_file tf1
        }
    }
}
"""


def test_specs_fill_targets_timers_commands_and_track_files() -> None:
    config = load_text(CONF).config
    (vs,) = health_specs(config)
    assert (vs.key, vs.protocol, vs.quorum, vs.sorry_server and vs.sorry_server.key) == (
        "[10.0.0.1]:tcp:80", "tcp", 2, (IPv4Address("10.9.9.9"), 80))
    rs1, rs2 = vs.real_servers
    assert (rs1.key, rs1.weight, rs1.inhibit_on_failure) == ((IPv4Address("10.1.0.1"), 8080), 4,
                                                             True)
    tcp, http = rs1.checkers
    assert isinstance(tcp, TcpCheckSpec) and isinstance(http, HttpCheckSpec)
    # the checker's target defaults to its real server; timers inherited from the VS
    assert (tcp.connect_ip, tcp.connect_port, tcp.connect_timeout, tcp.delay_loop) == (
        IPv4Address("10.1.0.1"), 8080, 2.0, 7.0)
    assert (http.connect_port, http.ssl, http.urls[0].path, http.urls[0].status_codes) == (
        81, False, "/health", ((200, 204),))
    misc, file_check = rs2.checkers
    assert isinstance(misc, MiscCheckSpec) and isinstance(file_check, FileCheckSpec)
    assert misc.command.argv == ("/usr/local/bin/check", "10.1.0.2")
    assert misc.command.user == "nobody" and misc.dynamic
    assert (file_check.path, file_check.weight) == ("/run/weight1", 3)


def test_spec_cache_reuses_unchanged_virtual_servers() -> None:
    cache = SpecCache()
    first = cache.specs(load_text(CONF).config)
    again = cache.specs(load_text(CONF).config)
    assert again[0] is first[0]  # same object: comparing old and new specs is cheap
    changed = cache.specs(load_text(CONF.replace("weight 4", "weight 5")).config)
    assert changed[0] is not first[0] and changed != first
    assert changed == health_specs(load_text(CONF.replace("weight 4", "weight 5")).config)


SMTP_CONF = """
virtual_server 10.0.0.1 25 {
    protocol TCP
    real_server 127.0.0.5 25 {
        connect_timeout 2
        SMTP_CHECK {
            helo_name director.test
            retry 0
            delay_loop 0.3
            warmup 0
            host {
                connect_port %d
            }
            host {
                connect_ip 127.0.0.15
                connect_port %d
                connect_timeout 1
            }
        }
    }
}
"""


def test_smtp_host_blocks_become_one_checker_each() -> None:
    result = load_text(SMTP_CONF % (2525, 2526))
    (vs,) = health_specs(result.config)
    (rs,) = vs.real_servers
    a, b = rs.checkers
    assert isinstance(a, SmtpCheckSpec) and isinstance(b, SmtpCheckSpec)
    # a host starts from the SMTP_CHECK's options (helo, timers, the RS address) and overrides
    assert (a.connect_ip, a.connect_port, a.connect_timeout, a.helo_name, a.retry) == (
        IPv4Address("127.0.0.5"), 2525, 2.0, "director.test", 0)
    assert (b.connect_ip, b.connect_port, b.connect_timeout) == (
        IPv4Address("127.0.0.15"), 2526, 1.0)
    # the SMTP_CHECK's own target is a checker too once it sets a connection option itself
    conf = (SMTP_CONF % (2525, 2526)).replace("warmup 0", "warmup 0\n connect_port 2527")
    (vs,) = health_specs(load_text(conf).config)
    assert [c.connect_port for c in vs.real_servers[0].checkers] == [2527, 2525, 2526]
    # ... or its own connect_timeout (checked in keepalived 2.2.7's -d dump: "hosts only" is one
    # checker per host, "connect_timeout 7 + one host" two checkers, the first on the RS port)
    conf = (SMTP_CONF % (2525, 2526)).replace("retry 0", "retry 0\n connect_timeout 7")
    (vs,) = health_specs(load_text(conf).config)
    assert [(c.connect_port, c.connect_timeout) for c in vs.real_servers[0].checkers] == [
        (25, 7.0), (2525, 7.0), (2526, 1.0)]
    assert not [d for d in result.diagnostics if "acted on" in d.message]


async def _mta(host: str, helo_reply: list[str]) -> asyncio.Server:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            w.write(b"220 mx.test ready\r\n")
            while line := (await r.readline()).decode():
                verb = line.split()[0].upper() if line.split() else ""
                if verb == "HELO":
                    w.write(helo_reply[0].encode() + b"\r\n")
                elif verb == "QUIT":
                    w.write(b"221 bye\r\n")
                    await w.drain()
                    break
        except ConnectionError:
            pass
        finally:
            w.close()

    return await asyncio.start_server(handler, host, 0)


async def test_smtp_real_server_is_up_only_while_every_host_answers() -> None:
    replies = ["250 ok"], ["250 ok"]
    servers = [await _mta("127.0.0.5", replies[0]), await _mta("127.0.0.15", replies[1])]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    (vs,) = health_specs(load_text(SMTP_CONF % tuple(ports)).config)
    changes: list[dict[object, int]] = []
    got = asyncio.Event()

    def on_change(key: str, weights: Mapping[object, int]) -> None:
        changes.append(dict(weights))
        got.set()

    async def wait_for(weights: dict[object, int]) -> None:
        async with asyncio.timeout(5):
            while not changes or changes[-1] != weights:
                got.clear()
                await got.wait()

    up = {(IPv4Address("127.0.0.5"), 25): 1}
    mgr = CheckerManager([vs], on_change=on_change)
    try:
        await mgr.start()
        await asyncio.sleep(0.5)
        assert changes == [up]
        assert all(st.runs >= 1 and st.last_ok for st in mgr.core.states)
        replies[1][0] = "554 go away"  # only the second host rejects HELO
        await wait_for({})
        snap = mgr.snapshot().virtual_servers[0].real_servers[0]
        assert [c.up for c in snap.checks] == [True, False]
        replies[1][0] = "250 ok"
        await wait_for(up)
    finally:
        await mgr.stop()
        for s in servers:
            s.close()
            await s.wait_closed()


def test_url_regex_is_passed_to_the_checker() -> None:
    conf = CONF.replace("status_code 200-204",
                        "status_code 200-204\n regex \"ready|ok\"\n regex_no_match")
    result = load_text(conf)
    http = health_specs(result.config)[0].real_servers[0].checkers[1]
    assert isinstance(http, HttpCheckSpec)
    assert (http.urls[0].regex, http.urls[0].regex_no_match) == ("ready|ok", True)
    assert not [d for d in result.diagnostics if "regex" in d.message]
    conf = CONF.replace("status_code 200-204", "regex ok\n regex_options Caseless ungreedy bogus"
                        "\n regex_min_offset 4\n regex_max_offset 100\n regex_stack 10 20")
    result = load_text(conf)
    url = health_specs(result.config)[0].real_servers[0].checkers[1].urls[0]  # type: ignore[union-attr]
    assert (url.regex_options, url.regex_min_offset, url.regex_max_offset) == (
        ("caseless", "ungreedy"), 4, 100)
    # what vrrpd cannot emulate with Python's re says so; a bad name is an error
    assert sorted(d.message for d in result.diagnostics if "regex" in d.message) == [
        "'regex_stack' is parsed but not acted on yet by vrrpd",
        "invalid value for 'regex_options': expected PCRE2 option names such as caseless, "
        "multiline, dotall, extended, found 'bogus'",
        "regex option 'ungreedy' is parsed but not acted on yet by vrrpd"]


def _read_fifo(fd: int) -> list[str]:
    try:
        return os.read(fd, 65536).decode().splitlines()
    except BlockingIOError:
        return []


async def test_notify_fifo_and_lvs_notify_fifo_get_the_checker_lines(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.8", 0)
    port = server.sockets[0].getsockname()[1]
    conf = f"""
global_defs {{
    notify_fifo {tmp_path}/all.fifo
    lvs_notify_fifo {tmp_path}/lvs.fifo
}}
virtual_server 10.0.0.1 80 {{
    protocol TCP
    real_server 127.0.0.8 {port} {{
        TCP_CHECK {{
            connect_timeout 1
            retry 0
            delay_loop 0.3
            warmup 0
        }}
    }}
}}
"""
    config = load_text(conf).config
    fifo = lvs_notify_fifo(config.global_defs)
    assert fifo is not None and len(fifo.fifos) == 2  # created as FIFOs
    readers = [os.open(tmp_path / name, os.O_RDONLY | os.O_NONBLOCK)
               for name in ("all.fifo", "lvs.fifo")]
    mgr = CheckerManager(health_specs(config), on_change=lambda k, w: None, on_fifo=fifo)
    try:
        await mgr.start()
        for fd in readers:  # started with quorum met
            assert _read_fifo(fd) == ["VS [10.0.0.1]:tcp:80 UP"]
        server.close()
        await server.wait_closed()
        await asyncio.sleep(1.0)
        for fd in readers:
            assert _read_fifo(fd) == [f"RS [127.0.0.8]:tcp:{port} [10.0.0.1]:tcp:80 DOWN",
                                      "VS [10.0.0.1]:tcp:80 DOWN"]
    finally:
        await mgr.stop()
        fifo.close()
        for fd in readers:
            os.close(fd)
        server.close()
    # no FIFO configured: no sink
    assert lvs_notify_fifo(load_text(CONF).config.global_defs) is None
