"""global_defs and SSL: values, defaults, inheritance into instances, diagnostics."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address

from vrrpd.config.errors import Severity
from vrrpd.config.loader import LoadResult, load_text
from vrrpd.config.model import FlushOnStop, GlobalDefs, LvsTimeouts


def load(text: str) -> LoadResult:
    return load_text(textwrap.dedent(text), filename="t.conf")


def unacted(result: LoadResult) -> tuple[set[str], list[str]]:
    """(keywords warned as not acted on, every other diagnostic) — pins the honest warnings."""
    names = {d.message.split("'")[1] for d in result.diagnostics
             if d.severity is Severity.WARNING and ("acted on" in d.message
                                                    or "not sent yet" in d.message)}
    rest = [str(d) for d in result.diagnostics
            if not (d.severity is Severity.WARNING and ("acted on" in d.message
                                                        or "not sent yet" in d.message))]
    return names, rest


def severities(result: LoadResult) -> list[Severity]:
    return [d.severity for d in result.diagnostics]


def test_empty_config_has_keepalived_defaults() -> None:
    config, diags = load("")
    assert diags == ()
    g = config.global_defs
    assert g == GlobalDefs()
    assert (g.smtp_port, g.smtp_connect_timeout) == (25, 30.0)
    assert (g.vrrp_garp_master_delay, g.vrrp_garp_master_repeat) == (5.0, 5)
    assert (g.vrrp_garp_master_refresh, g.vrrp_garp_master_refresh_repeat) == (0.0, 1)
    assert g.vrrp_mcast_group4 == IPv4Address("224.0.0.18")
    assert g.lvs_flush_on_stop is FlushOnStop.NONE
    assert config.vrrp_instances == () and config.virtual_servers == ()


def test_seed_style_global_defs() -> None:
    config, diags = load("""
        global_defs {
          notification_email {
            acassen@firewall.loc
            failover@firewall.loc
          }
          notification_email_from Alexandre.Cassen@firewall.loc
          smtp_server 127.0.0.1
          smtp_connect_timeout 30
          router_id LVS_DEVEL
        }
    """)
    assert unacted(LoadResult(config, diags)) == (set(), [])  # mail alerts: vrrpd.alerts
    g = config.global_defs
    assert g.notification_email == ("acassen@firewall.loc", "failover@firewall.loc")
    assert g.notification_email_from == "Alexandre.Cassen@firewall.loc"
    assert g.smtp_server == IPv4Address("127.0.0.1")
    assert g.smtp_connect_timeout == 30.0
    assert g.router_id == "LVS_DEVEL"


def test_smtp_server_name_and_port_script_user_security() -> None:
    g = load("""
        global_defs {
          smtp_server mail.example.com 2525
          smtp_helo_name lb1
          script_user nobody nogroup
          enable_script_security
          vrrp_strict
          lvs_flush
          lvs_flush_on_stop VS
        }
    """).config.global_defs
    assert (g.smtp_server, g.smtp_server_name, g.smtp_port) == (None, "mail.example.com", 2525)
    assert g.smtp_helo_name == "lb1"
    assert (g.script_user, g.script_group) == ("nobody", "nogroup")
    assert g.enable_script_security and g.vrrp_strict and g.lvs_flush
    assert g.lvs_flush_on_stop is FlushOnStop.VS
    g2 = load("global_defs {\n lvs_flush_on_stop\n}\n").config.global_defs
    assert g2.lvs_flush_on_stop is FlushOnStop.ALL


def test_lvs_timeouts_and_sync_daemon() -> None:
    g = load("""
        global_defs {
          lvs_timeouts tcp 7200 tcpfin 120 udp 300
          lvs_sync_daemon eth1 VI_1 id 7 maxlen 1400 port 8850 ttl 3 group 224.0.0.82
        }
    """).config.global_defs
    assert g.lvs_timeouts == LvsTimeouts(tcp=7200, tcpfin=120, udp=300)
    sd = g.lvs_sync_daemon
    assert sd is not None
    assert (sd.interface, sd.instance, sd.id, sd.maxlen, sd.port, sd.ttl) == \
        ("eth1", "VI_1", 7, 1400, 8850, 3)
    assert sd.group == IPv4Address("224.0.0.82")
    old = load("global_defs {\n lvs_sync_daemon eth0 inst VI_2\n}\n").config.global_defs
    assert old.lvs_sync_daemon is not None
    assert (old.lvs_sync_daemon.instance, old.lvs_sync_daemon.port) == ("VI_2", 8848)


def test_garp_globals_are_inherited_unless_instance_overrides() -> None:
    config, diags = load("""
        global_defs {
          vrrp_garp_master_delay 10
          vrrp_garp_master_repeat 3
          vrrp_garp_master_refresh 60
          vrrp_garp_master_refresh_repeat 2
          vrrp_garp_interval 0.001
        }
        vrrp_instance A {
          interface eth0
          virtual_router_id 1
          virtual_ipaddress {
            10.0.0.1
          }
        }
        vrrp_instance B {
          interface eth0
          virtual_router_id 2
          garp_master_delay 1
          garp_master_repeat 7
          virtual_ipaddress {
            10.0.0.2
          }
        }
    """)
    assert diags == ()
    a, b = config.vrrp_instances
    assert (a.garp_master_delay, a.garp_master_repeat) == (10.0, 3)
    assert (a.garp_master_refresh, a.garp_master_refresh_repeat) == (60.0, 2)
    assert a.garp_interval == 0.001
    # lower-priority GARP defaults follow the master values
    assert (a.garp_lower_prio_delay, a.garp_lower_prio_repeat) == (10.0, 3)
    assert (b.garp_master_delay, b.garp_master_repeat) == (1.0, 7)
    assert (b.garp_lower_prio_delay, b.garp_lower_prio_repeat) == (1.0, 7)


def test_unknown_keyword_warns_with_position_and_suggestion() -> None:
    result = load("global_defs {\n  router_idx foo\n}\n")
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING
    assert (d.pos.file, d.pos.line, d.pos.col) == ("t.conf", 2, 3)
    assert "router_idx" in d.message
    assert d.hint == "did you mean 'router_id'?"
    assert result.config.global_defs.router_id is None


def test_invalid_value_is_an_error_naming_expected_and_found() -> None:
    result = load("global_defs {\n  vrrp_garp_master_repeat 0\n  smtp_connect_timeout abc\n}\n")
    assert severities(result) == [Severity.ERROR, Severity.ERROR]
    first, second = result.diagnostics
    assert (first.pos.line, first.pos.col) == (2, 27)
    assert "expected an integer 1..255" in first.message and "found '0'" in first.message
    assert (second.pos.line, second.pos.col) == (3, 24)
    assert "found 'abc'" in second.message and "seconds" in second.message
    g = result.config.global_defs
    assert (g.vrrp_garp_master_repeat, g.smtp_connect_timeout) == (5, 30.0)  # defaults kept


def test_not_acted_keywords_warn_saying_so() -> None:
    result = load("global_defs {\n  enable_traps\n  vrrp_iptables\n}\n")
    assert severities(result) == [Severity.WARNING, Severity.WARNING]
    assert all("not acted on yet" in d.message for d in result.diagnostics)
    assert result.config.global_defs.enable_traps is True


def test_ssl_block() -> None:
    config, diags = load("SSL {\n password pw\n ca /etc/ca.pem\n certificate /c.pem\n"
                         " key /k.pem\n}\n")
    assert diags == ()
    assert config.ssl is not None
    assert (config.ssl.password, config.ssl.ca, config.ssl.certificate, config.ssl.key) == \
        ("pw", "/etc/ca.pem", "/c.pem", "/k.pem")


def test_unknown_top_level_block_warns_with_suggestion() -> None:
    result = load("vrrp_instanse VI_1 {\n}\n")
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and d.hint == "did you mean 'vrrp_instance'?"
    assert (d.pos.line, d.pos.col) == (1, 1)
