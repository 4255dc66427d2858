"""Every checker block: options, per-type defaults and inheritance VS -> RS -> checker."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address

import pytest

from vrrpd.config.errors import Severity
from vrrpd.config.loader import LoadResult, load_text
from vrrpd.config.model import (
    Checker,
    DnsCheck,
    FileCheck,
    HttpGetCheck,
    MiscCheck,
    PingCheck,
    SmtpCheck,
    SslGetCheck,
    TcpCheck,
    UdpCheck,
)

SECURITY = "enable_script_security"


def quiet(result: LoadResult) -> LoadResult:
    """Drop the script-security warning (pinned in test_loader_vrrp) so tests see the rest."""
    return LoadResult(result.config,
                      tuple(d for d in result.diagnostics if SECURITY not in d.message))


def unacted(result: LoadResult) -> tuple[set[str], list[str]]:
    """(keywords warned as not acted on, every other diagnostic) — pins the honest warnings."""
    names = {d.message.split("'")[1] for d in result.diagnostics
             if d.severity is Severity.WARNING and ("acted on" in d.message
                                                    or "not sent yet" in d.message)}
    rest = [str(d) for d in result.diagnostics
            if not (d.severity is Severity.WARNING and ("acted on" in d.message
                                                        or "not sent yet" in d.message))]
    return names, rest


def checkers(rs_body: str, *, vs_body: str = "", head: str = "") -> tuple[tuple[Checker, ...],
                                                                          LoadResult]:
    text = (head + "virtual_server 10.0.0.1 80 {\nprotocol TCP\n" + vs_body +
            "real_server 10.0.0.5 8080 {\n" + textwrap.dedent(rs_body) + "}\n"
            "lb_algo rr\nlb_kind DR\n}\n")
    result = quiet(load_text(text, filename="t.conf"))
    (vs,) = result.config.virtual_servers
    (rs,) = vs.real_servers
    return rs.checkers, result


def test_tcp_check_defaults() -> None:
    (c,), result = checkers("TCP_CHECK {\n}\n")
    assert result.diagnostics == ()
    assert isinstance(c, TcpCheck) and c.kind == "TCP_CHECK"
    assert (c.connect_timeout, c.retry, c.delay_before_retry, c.delay_loop) == (5.0, 1, 1.0, 60.0)
    assert c.connect_ip is None and c.connect_port is None and c.warmup is None
    assert not c.alpha


def test_seed_tcp_check_nb_get_retry_is_ignored_as_keepalived_ignores_it() -> None:
    """keepalived 2.2.7: 'Unknown keyword nb_get_retry' in TCP_CHECK (and every checker but
    HTTP_GET/SSL_GET), so retry keeps its default 1; a mixed pair must detect on one schedule."""
    (c,), result = checkers("""
        weight 1
        TCP_CHECK {
          connect_timeout 3
          nb_get_retry 3
          delay_before_retry 3
          connect_port 8066
        }
    """, vs_body="delay_loop 6\n")
    assert isinstance(c, TcpCheck)
    assert (c.connect_timeout, c.retry, c.delay_before_retry, c.connect_port, c.delay_loop) == \
        (3.0, 1, 3.0, 8066, 6.0)
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "'nb_get_retry' is ignored" in d.message
    assert "did you mean 'retry'" in d.message
    assert (d.pos.line, d.pos.col) == (9, 3)


def test_http_get_nb_get_retry_is_a_deprecated_retry() -> None:
    (c,), result = checkers("HTTP_GET {\n url {\n  path /\n }\n nb_get_retry 4\n}\n")
    assert c.retry == 4
    (d,) = result.diagnostics
    assert "'nb_get_retry' is deprecated" in d.message


def test_connection_options() -> None:
    (c,), result = checkers("TCP_CHECK {\n connect_ip 10.0.0.9\n connect_port 81\n"
                            " bindto 10.0.0.2\n bind_port 4000\n bind_if eth0\n fwmark 3\n"
                            " warmup 2\n alpha\n log_all_failures\n}\n")
    assert unacted(result) == ({"log_all_failures"}, [])
    assert (c.connect_ip, c.connect_port, c.bindto, c.bind_port, c.bind_if, c.fwmark) == \
        (IPv4Address("10.0.0.9"), 81, IPv4Address("10.0.0.2"), 4000, "eth0", 3)
    assert (c.warmup, c.alpha, c.log_all_failures) == (2.0, True, True)


def test_timers_inherit_vs_then_rs_then_checker() -> None:
    cs, result = checkers("""
        connect_timeout 4
        retry 2
        TCP_CHECK {
        }
        TCP_CHECK {
          retry 7
          delay_loop 3
        }
    """, vs_body="delay_loop 30\nconnect_timeout 9\ndelay_before_retry 2\nalpha\n")
    assert result.diagnostics == ()
    a, b = cs
    assert (a.delay_loop, a.connect_timeout, a.retry, a.delay_before_retry, a.alpha) == \
        (30.0, 4.0, 2, 2.0, True)
    assert (b.delay_loop, b.connect_timeout, b.retry) == (3.0, 4.0, 7)


def test_http_get_urls_and_defaults() -> None:
    (c,), result = checkers("""
        HTTP_GET {
          url {
            path /health
            digest 9B3A0C85A887A256D6939DA88AABD8CD
            status_code 200
          }
          url {
            path /
            status_code 200-299 404 500-503
            virtualhost other.example
          }
          url {
            path /any
          }
          http_protocol 1.1
          virtualhost www.example
          fast_recovery
        }
    """)
    assert result.diagnostics == ()
    assert isinstance(c, HttpGetCheck) and not isinstance(c, SslGetCheck)
    assert (c.retry, c.delay_before_retry) == (1, 3.0)  # HTTP's own default
    u1, u2, u3 = c.urls
    assert (u1.path, u1.digest, u1.status_codes) == \
        ("/health", "9b3a0c85a887a256d6939da88aabd8cd", ((200, 200),))
    assert u2.status_codes == ((200, 299), (404, 404), (500, 503))
    assert u2.virtualhost == "other.example"
    assert u3.status_codes == ((200, 299),) and u3.digest is None
    assert (c.http_protocol, c.virtualhost, c.fast_recovery) == ("1.1", "www.example", True)


def test_http_virtualhost_inherited_from_real_server() -> None:
    (c,), _ = checkers("virtualhost rs.example\nHTTP_GET {\n url {\n path /\n }\n}\n",
                       vs_body="virtualhost vs.example\n")
    assert isinstance(c, HttpGetCheck) and c.virtualhost == "rs.example"


def test_http_get_errors() -> None:
    cs, result = checkers("HTTP_GET {\n url {\n path /\n digest xyz\n status_code 20x 600\n"
                          " }\n}\nHTTP_GET {\n connect_timeout 2\n}\n")
    (c,) = cs
    assert isinstance(c, HttpGetCheck) and c.urls[0].digest is None
    errs = [(d.severity, d.pos.line, d.pos.col) for d in result.diagnostics]
    assert errs == [(Severity.ERROR, 7, 9), (Severity.ERROR, 8, 14), (Severity.ERROR, 8, 18),
                    (Severity.ERROR, 11, 1)]
    assert "32 hex digits" in result.diagnostics[0].message
    assert "has no 'url" in result.diagnostics[3].message


def test_ssl_get_enable_sni() -> None:
    (c,), result = checkers("SSL_GET {\n url {\n path /\n }\n enable_sni\n}\n")
    assert result.diagnostics == ()
    assert isinstance(c, SslGetCheck) and c.kind == "SSL_GET" and c.enable_sni


def test_smtp_check() -> None:
    (c,), result = checkers('SMTP_CHECK {\n helo_name "mail check"\n connect_timeout 10\n'
                            ' host {\n connect_ip 10.0.0.7\n connect_port 25\n }\n}\n')
    assert isinstance(c, SmtpCheck)
    assert (c.helo_name, c.connect_timeout) == ("mail check", 10.0)
    (h,) = c.hosts
    assert (h.connect_ip, h.connect_port) == (IPv4Address("10.0.0.7"), 25)
    assert unacted(result)[0] == set()  # host{} is acted on: one SMTP checker per host
    (d,) = unacted(result)[1]
    assert "warning" in d and "deprecated" in d


def test_dns_check_defaults_and_values() -> None:
    (c,), result = checkers("DNS_CHECK {\n}\n", vs_body="delay_loop 7\n")
    assert isinstance(c, DnsCheck) and result.diagnostics == ()
    assert (c.type, c.name, c.retry, c.delay_before_retry) == ("SOA", ".", 3, 7.0)
    (c,), result = checkers("DNS_CHECK {\n type aaaa\n name example.com\n}\n")
    assert isinstance(c, DnsCheck) and (c.type, c.name) == ("AAAA", "example.com")
    _, bad = checkers("DNS_CHECK {\n type BOGUS\n}\n")
    assert bad.diagnostics[0].severity is Severity.ERROR and "A|NS|CNAME" in \
        bad.diagnostics[0].message


def test_udp_check_hex_strings() -> None:
    (c,), result = checkers("UDP_CHECK {\n payload Ab12f 3 456 546443123\n"
                            " require_reply 0a Xb\n min_reply_length 2\n max_reply_length 64\n}\n")
    assert isinstance(c, UdpCheck) and result.diagnostics == ()
    assert c.payload == bytes.fromhex("AB120F03450654644312 03".replace(" ", ""))
    assert c.require_reply and c.reply_pattern == bytes([0x0A, 0x0B])
    assert c.reply_mask == bytes([0xFF, 0x0F])
    assert (c.min_reply_length, c.max_reply_length) == (2, 64)
    (c,), _ = checkers("UDP_CHECK {\n require_reply\n}\n")
    assert isinstance(c, UdpCheck) and c.require_reply and c.reply_pattern is None
    assert c.payload is None and (c.min_reply_length, c.max_reply_length) == (0, 255)
    _, bad = checkers("UDP_CHECK {\n payload zz\n}\n")
    assert bad.diagnostics[0].severity is Severity.ERROR and "hex" in bad.diagnostics[0].message


def test_ping_check() -> None:
    (c,), result = checkers("PING_CHECK {\n connect_timeout 2\n}\n")
    assert isinstance(c, PingCheck) and c.connect_timeout == 2.0 and result.diagnostics == ()


def test_misc_check() -> None:
    (c,), result = checkers('MISC_CHECK {\n misc_path "/usr/bin/check.sh 10.0.0.5 arg"\n'
                            ' misc_timeout 5\n misc_dynamic\n user nobody nogroup\n}\n')
    assert isinstance(c, MiscCheck) and result.diagnostics == ()
    assert c.misc_path.argv == ("/usr/bin/check.sh", "10.0.0.5", "arg")
    assert (c.misc_path.user, c.misc_path.group) == ("nobody", "nogroup")
    assert (c.misc_timeout, c.misc_dynamic, c.retry, c.delay_before_retry) == (5.0, True, 0, 1.0)
    (c,), _ = checkers("MISC_CHECK {\n misc_path /bin/true\n}\n")
    assert isinstance(c, MiscCheck) and c.misc_timeout is None and not c.misc_dynamic
    cs, bad = checkers("MISC_CHECK {\n misc_timeout 3\n}\n")
    assert cs == () and bad.diagnostics[0].severity is Severity.ERROR


def test_file_check_and_track_file_reference() -> None:
    head = "track_file tf {\n file /run/tf\n}\n"
    (c,), result = checkers("FILE_CHECK {\n track_file tf\n dynamic\n weight 2 reverse\n}\n",
                            head=head)
    assert isinstance(c, FileCheck) and result.diagnostics == ()
    assert (c.track_file, c.dynamic, c.weight, c.reverse) == ("tf", True, 2, True)
    cs, bad = checkers("FILE_CHECK {\n track_file tff\n}\n", head=head)
    assert cs == ()
    (d,) = bad.diagnostics
    assert d.severity is Severity.ERROR and d.hint == "did you mean 'tf'?"


@pytest.mark.parametrize("block", ["TCP_CHECK", "PING_CHECK", "DNS_CHECK", "SMTP_CHECK"])
def test_unknown_checker_keyword_warns(block: str) -> None:
    _, result = checkers(f"{block} {{\n conect_timeout 3\n}}\n")
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and d.hint == "did you mean 'connect_timeout'?"
    assert (d.pos.line, d.pos.col) == (5, 2)


def test_bfd_check_is_parsed_but_not_acted() -> None:
    cs, result = checkers("BFD_CHECK {\n name b1\n}\n")
    assert cs == ()
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "not acted on yet" in d.message


@pytest.mark.parametrize(("text", "timeout", "error"), [
    ("4294", 4294.0, False), ("0", None, False), ("4295", None, True), ("0.5", None, True),
])
def test_misc_timeout_range_as_keepalived_2_2_7(text: str, timeout: float | None,
                                                error: bool) -> None:
    """keepalived -t: 'number 4295 outside range [0, 4294]' / 'invalid number 0.5' (exit 6)."""
    (c,), result = checkers(f"MISC_CHECK {{\n misc_path /bin/true\n misc_timeout {text}\n}}\n")
    assert c.misc_timeout == timeout
    errors = [d for d in result.diagnostics if d.severity >= Severity.ERROR]
    assert bool(errors) is error
    if error:
        assert "misc_timeout" in errors[0].message and "0..4294" in errors[0].message
