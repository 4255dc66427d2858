"""virtual_server_group, virtual_server and real_server: aliases, defaults, inheritance."""

from __future__ import annotations

import re
import textwrap
from ipaddress import IPv4Address, IPv6Address

import pytest

from vrrpd.config.errors import Severity
from vrrpd.config.loader import LoadResult, load_text
from vrrpd.config.model import (
    LvsMethod,
    Protocol,
    SchedFlag,
    Scheduler,
    TunnelType,
    VirtualServer,
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


def load(text: str) -> LoadResult:
    return quiet(load_text(textwrap.dedent(text), filename="t.conf"))


def vs(body: str, head: str = "virtual_server 10.0.0.1 80") -> tuple[VirtualServer, LoadResult]:
    """One virtual server; a scheduler and method are appended unless the body sets them
    (keepalived reports their absence, see test_missing_scheduler_and_method_warn)."""
    body = textwrap.dedent(body)
    if not re.search(r"^(lb_algo|lvs_sched)\b", body, re.M):
        body += "lvs_sched wlc\n"
    if not re.search(r"^(lb_kind|lvs_method)\b", body, re.M):
        body += "lvs_method NAT\n"
    if not re.search(r"^real_server\b", body, re.M):
        body += "real_server 10.0.0.99 80 {\n}\n"
    result = quiet(load_text(f"{head} {{\n{body}}}\n", filename="t.conf"))
    assert len(result.config.virtual_servers) == 1, result.diagnostics
    return result.config.virtual_servers[0], result


def test_seed_000_virtual_server() -> None:
    v, result = vs("""
        delay_loop 6
        lb_algo rr
        lb_kind DR
        nat_mask 255.255.255.0
        persistence_timeout 50
        protocol TCP
        real_server 192.168.244.148 8066 {
          weight 1
        }
    """, head="virtual_server 192.168.244.10 8066")
    assert (v.address, v.port, v.protocol) == (IPv4Address("192.168.244.10"), 8066, Protocol.TCP)
    assert v.scheduler is Scheduler.RR and v.lvs_method is LvsMethod.DR
    assert v.persistence_timeout == 50 and v.delay_loop == 6.0
    assert v.key == "[192.168.244.10]:tcp:8066"
    (rs,) = v.real_servers
    assert (rs.address, rs.port, rs.weight, rs.lvs_method) == \
        (IPv4Address("192.168.244.148"), 8066, 1, LvsMethod.DR)
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "'nat_mask' is deprecated" in d.message
    assert (d.pos.line, d.pos.col) == (6, 1)


def test_virtual_server_without_real_servers_is_ignored() -> None:
    result = load("virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n"
                  " sorry_server 10.0.0.9 80\n}\n")
    assert result.config.virtual_servers == ()
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and "has no real servers" in d.message
    assert (d.pos.line, d.pos.col) == (1, 1)


def test_missing_scheduler_and_method_warn() -> None:
    result = load("virtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 10.0.0.2 80 {\n"
                  " }\n}\n")
    (v,) = result.config.virtual_servers
    assert v.scheduler is Scheduler.WLC and v.lvs_method is LvsMethod.NAT
    d1, d2 = result.diagnostics
    assert (d1.severity, d1.pos.line) == (Severity.WARNING, 1) and "no scheduler" in d1.message
    assert d2.severity is Severity.WARNING and "no forwarding method" in d2.message


def test_defaults() -> None:
    v, result = vs("protocol TCP\nreal_server 10.0.0.5 {\n}\n")
    assert result.diagnostics == ()
    assert v.scheduler is Scheduler.WLC and v.lvs_method is LvsMethod.NAT
    assert (v.delay_loop, v.connect_timeout, v.quorum, v.hysteresis) == (60.0, 5.0, 1, 0)
    assert v.persistence_timeout is None and v.sorry_server is None
    assert not (v.alpha or v.omega or v.ha_suspend or v.inhibit_on_failure or v.ops)
    (rs,) = v.real_servers
    assert (rs.port, rs.weight, rs.uthreshold, rs.lthreshold) == (80, 1, 0, 0)
    assert rs.checkers == ()


@pytest.mark.parametrize("sched", [s.value for s in Scheduler])
def test_every_scheduler_both_spellings(sched: str) -> None:
    for kw in ("lvs_sched", "lb_algo"):
        v, result = vs(f"protocol TCP\n{kw} {sched}\n")
        assert v.scheduler is Scheduler(sched) and result.diagnostics == ()


def test_bad_scheduler_and_method_are_errors_and_defaults_stay() -> None:
    v, result = vs("protocol TCP\nlb_algo RR\nlb_kind dr\n")
    assert v.scheduler is Scheduler.WLC and v.lvs_method is LvsMethod.NAT
    e1, e2, w1, w2 = result.diagnostics  # as keepalived: the bad value, then "none set"
    assert (w1.severity, w2.severity) == (Severity.WARNING, Severity.WARNING)
    assert (e1.severity, e1.pos.line, e1.pos.col) == (Severity.ERROR, 3, 9)
    assert "found 'RR'" in e1.message and "rr|wrr" in e1.message
    assert (e2.severity, e2.pos.line) == (Severity.ERROR, 4) and "NAT|DR|TUN" in e2.message


@pytest.mark.parametrize(("word", "proto"), [("TCP", Protocol.TCP), ("udp", Protocol.UDP),
                                             ("Sctp", Protocol.SCTP)])
def test_protocol_is_case_insensitive(word: str, proto: Protocol) -> None:
    v, result = vs(f"protocol {word}\n")
    assert v.protocol is proto and result.diagnostics == ()


def test_missing_protocol_becomes_udp_with_a_warning() -> None:
    v, result = vs("lb_algo rr\n")
    assert v.protocol is Protocol.UDP
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "defaulting to UDP" in d.message
    assert (d.pos.line, d.pos.col) == (1, 1)


def test_fwmark_and_ipv6_and_group_services() -> None:
    v, result = vs("lb_algo sh\nsh-port\nsh-fallback\nops\n", head="virtual_server fwmark 7")
    assert v.fwmark == 7 and v.address is None and result.diagnostics == ()
    assert v.sched_flags == frozenset({SchedFlag.FLAG_1, SchedFlag.FLAG_2}) and v.ops
    assert v.key == "FWM 7"
    v6, _ = vs("protocol TCP\nreal_server 2001:db8::20 {\n}\n",
               head="virtual_server 2001:db8::10 443")
    assert v6.address == IPv6Address("2001:db8::10") and v6.port == 443
    config, diags = load("""
        virtual_server_group WEB {
          10.0.0.1 80
          10.0.1.1-10 8080
          10.0.2.0/30
          fwmark 9 inet
        }
        virtual_server group WEB {
          protocol TCP
          lb_algo rr
          lb_kind DR
          real_server 10.0.0.5 80 {
          }
        }
    """)
    assert diags == ()
    g = config.virtual_server_groups["WEB"]
    assert [(str(r.first), str(r.last), r.port) for r in g.ranges] == [
        ("10.0.0.1", "10.0.0.1", 80), ("10.0.1.1", "10.0.1.10", 8080),
        ("10.0.2.0", "10.0.2.3", 0)]
    assert [(f.fwmark, f.family) for f in g.fwmarks] == [(9, "inet")]
    assert config.virtual_servers[0].group == "WEB"


def test_unknown_group_drops_the_virtual_server() -> None:
    result = load("virtual_server_group WEB {\n 10.0.0.1 80\n}\n"
                  "virtual_server group WEBB {\n protocol TCP\n lb_algo rr\n lb_kind DR\n"
                  " real_server 10.0.0.5 80 {\n }\n}\n")
    assert result.config.virtual_servers == ()
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and d.hint == "did you mean 'WEB'?" and d.pos.line == 4


def test_persistence_quorum_sorry_and_flags() -> None:
    v, result = vs("""
        protocol TCP
        lvs_sched wrr
        persistence_timeout
        persistence_granularity 255.255.255.0
        quorum 3
        hysteresis 1
        quorum_up "/bin/up VS"
        quorum_down /bin/down
        sorry_server 10.9.9.9 8080
        sorry_server_inhibit
        sorry_server_lvs_method DR
        alpha
        omega
        ha_suspend
        inhibit_on_failure
        virtualhost www.example.com
        smtp_alert
    """)
    assert unacted(result) == ({"ha_suspend"}, [])
    assert v.persistence_timeout == 360 and v.persistence_granularity == 24
    assert (v.quorum, v.hysteresis) == (3, 1)
    assert v.quorum_up is not None and v.quorum_up.argv == ("/bin/up", "VS")
    assert v.quorum_down is not None and v.quorum_down.argv == ("/bin/down",)
    s = v.sorry_server
    assert s is not None and (s.address, s.port, s.inhibit, s.lvs_method) == \
        (IPv4Address("10.9.9.9"), 8080, True, LvsMethod.DR)
    assert v.alpha and v.omega and v.ha_suspend and v.inhibit_on_failure and v.smtp_alert
    assert v.virtualhost == "www.example.com"


def test_tunnel_method() -> None:
    v, result = vs("protocol UDP\nlvs_method TUN type gue port 6080 csum\n")
    assert result.diagnostics == ()
    assert v.lvs_method is LvsMethod.TUN and v.tunnel is not None
    assert (v.tunnel.type, v.tunnel.port, v.tunnel.checksum) == (TunnelType.GUE, 6080, "csum")
    v, _ = vs("protocol UDP\nlvs_method TUN type gre\nreal_server 10.0.0.5 80 {\n}\n"
              "real_server 10.0.0.6 80 {\n lvs_method DR\n}\n")
    a, b = v.real_servers
    assert a.lvs_method is LvsMethod.TUN and a.tunnel is not None
    assert a.tunnel.type is TunnelType.GRE
    assert b.lvs_method is LvsMethod.DR and b.tunnel is None
    _, bad = vs("protocol UDP\nlvs_method TUN type gue\n")
    assert bad.diagnostics[0].severity is Severity.ERROR and "port" in bad.diagnostics[0].message


def test_real_server_inherits_from_virtual_server_and_overrides() -> None:
    v, result = vs("""
        protocol TCP
        lb_kind DR
        inhibit_on_failure
        delay_loop 10
        connect_timeout 2
        alpha
        real_server 10.0.0.5 8080 {
          weight 3
          notify_up "/bin/rs up"
          notify_down /bin/rsdown
          uthreshold 100
          lthreshold 10
        }
        real_server 10.0.0.6 {
          lvs_method NAT
          inhibit_on_failure false
          delay_loop 20
          weight 0
        }
    """)
    assert result.diagnostics == ()
    a, b = v.real_servers
    assert (a.port, a.weight, a.lvs_method, a.inhibit_on_failure) == (8080, 3, LvsMethod.DR, True)
    assert (a.delay_loop, a.connect_timeout, a.alpha) == (10.0, 2.0, True)
    assert a.notify_up is not None and a.notify_up.argv == ("/bin/rs", "up")
    assert a.notify_down is not None and (a.uthreshold, a.lthreshold) == (100, 10)
    assert (b.port, b.weight, b.lvs_method, b.inhibit_on_failure, b.delay_loop) == \
        (80, 0, LvsMethod.NAT, False, 20.0)


def test_port_zero_without_persistence_is_made_persistent() -> None:
    v, result = vs("protocol TCP\n", head="virtual_server 10.0.0.2")
    assert v.port == 0 and v.persistence_timeout == 360
    assert result.diagnostics[0].severity is Severity.WARNING


def test_invalid_addresses_and_weights() -> None:
    result = load("virtual_server 10.0.0.300 80 {\n protocol TCP\n}\n"
                  "virtual_server 10.0.0.1 80 {\n protocol TCP\n"
                  " real_server 10.0.0.x 80 {\n }\n real_server 10.0.0.5 80 {\n weight -1\n }\n}\n")
    assert len(result.config.virtual_servers) == 1
    (rs,) = result.config.virtual_servers[0].real_servers
    assert rs.weight == 1
    errs = [(d.pos.line, d.pos.col) for d in result.diagnostics if d.severity is Severity.ERROR]
    assert errs == [(1, 16), (6, 14), (9, 9)]


def test_real_server_family_must_match_unless_tunnelled() -> None:
    v, result = vs("protocol TCP\nreal_server 2001:db8::5 80 {\n}\nreal_server 2001:db8::6 80 {\n"
                   " lvs_method TUN\n}\n")
    assert [str(rs.address) for rs in v.real_servers] == ["2001:db8::6"]
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and "address family" in d.message
    assert (d.pos.line, d.pos.col) == (3, 1)


def test_nb_get_retry_on_servers_is_ignored_as_keepalived_2_2_7_ignores_it() -> None:
    v, result = vs("protocol TCP\nnb_get_retry 4\nreal_server 10.0.0.5 80 {\n}\n")
    assert v.retry is None and v.real_servers[0].retry is None
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "ignored" in d.message


def test_unknown_real_server_keyword_suggests() -> None:
    _, result = vs("protocol TCP\nreal_server 10.0.0.5 80 {\n wieght 2\n}\n")
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and d.hint == "did you mean 'weight'?"
    assert (d.pos.line, d.pos.col) == (4, 2)
