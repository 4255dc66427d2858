"""vrrp_instance: every keyword, keepalived's defaults, and the diagnostics it teaches with."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface

import pytest

from vrrpd.config.errors import Severity
from vrrpd.config.loader import LoadResult, load_text
from vrrpd.config.model import AuthType, InitialState, VrrpInstance
from vrrpd.config.references import commands_in_use, referenced_interfaces


def load(text: str) -> LoadResult:
    return quiet(load_text(textwrap.dedent(text), filename="t.conf"))


def instance(body: str, *, head: str = "") -> tuple[VrrpInstance, LoadResult]:
    text = head + "vrrp_instance VI_1 {\n" + textwrap.dedent(body) + "}\n"
    result = quiet(load_text(text, filename="t.conf"))
    assert len(result.config.vrrp_instances) == 1, result.diagnostics
    return result.config.vrrp_instances[0], result


SECURITY = "enable_script_security"


def quiet(result: LoadResult) -> LoadResult:
    """Drop the script-security warning (pinned in test_loader_vrrp) so tests see the rest."""
    return LoadResult(result.config,
                      tuple(d for d in result.diagnostics if SECURITY not in d.message))
MINIMAL = "interface eth0\nvirtual_router_id 51\nvirtual_ipaddress {\n 10.0.0.1\n}\n"


def unacted(result: LoadResult) -> tuple[set[str], list[str]]:
    """(keywords warned as not acted on, every other diagnostic) — pins the honest warnings."""
    names = {d.message.split("'")[1] for d in result.diagnostics
             if d.severity is Severity.WARNING and ("acted on" in d.message
                                                    or "not sent yet" in d.message)}
    rest = [str(d) for d in result.diagnostics
            if not (d.severity is Severity.WARNING and ("acted on" in d.message
                                                        or "not sent yet" in d.message))]
    return names, rest


def test_minimal_instance_defaults() -> None:
    inst, result = instance(MINIMAL)
    assert result.diagnostics == ()
    assert (inst.name, inst.interface, inst.virtual_router_id) == ("VI_1", "eth0", 51)
    assert inst.state is InitialState.BACKUP
    assert inst.priority == 100
    assert inst.advert_int == 1.0 and inst.version == 2
    assert inst.authentication.auth_type is AuthType.NONE
    assert inst.accept is True and inst.strict_mode is False
    assert inst.nopreempt is False and inst.preempt_delay == 0.0
    assert inst.sync_group is None
    assert inst.pos is not None and inst.pos.line == 1


@pytest.mark.parametrize(("lines", "priority"), [
    ("state MASTER\n", 255),
    ("state MASTER\npriority 150\n", 150),
    ("state BACKUP\n", 100),
    ("priority 1\n", 1),
])
def test_priority_defaults(lines: str, priority: int) -> None:
    inst, _ = instance(lines + MINIMAL)
    assert inst.priority == priority


def test_state_is_upper_case_only() -> None:
    inst, result = instance("state master\n" + MINIMAL)
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR
    assert (d.pos.line, d.pos.col) == (2, 7)
    assert "MASTER|BACKUP" in d.message and "found 'master'" in d.message
    assert inst.state is InitialState.BACKUP


def test_priority_out_of_range_falls_back_to_100_like_keepalived() -> None:
    inst, result = instance("state MASTER\npriority 300\n" + MINIMAL)
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and "1..255" in d.message and "'300'" in d.message
    assert (d.pos.line, d.pos.col) == (3, 10)
    assert inst.priority == 100


def test_missing_virtual_router_id_drops_the_instance() -> None:
    result = load("vrrp_instance VI_1 {\n interface eth0\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n")
    assert result.config.vrrp_instances == ()
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and "virtual router id must be set" in d.message
    assert (d.pos.line, d.pos.col) == (1, 1)


def test_missing_interface_drops_the_instance_even_with_default_interface() -> None:
    result = load("global_defs {\n default_interface eth1\n}\n"
                  "vrrp_instance VI_1 {\n virtual_router_id 1\n virtual_ipaddress {\n"
                  " 10.0.0.1\n }\n}\n")
    assert result.config.vrrp_instances == ()
    names, (d,) = unacted(result)
    assert names == {"default_interface"}
    assert "error" in d and "no 'interface'" in d and ":4:1:" in d


def test_invalid_vrid_reports_value_then_missing() -> None:
    result = load("vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 256\n}\n")
    assert result.config.vrrp_instances == ()
    msgs = [(d.severity, d.pos.line) for d in result.diagnostics
            if d.severity is Severity.ERROR]
    assert msgs == [(Severity.ERROR, 3), (Severity.ERROR, 1)]
    assert "found '256'" in result.diagnostics[0].message


def test_duplicate_vrid_on_one_interface_is_an_error_and_drops_the_second() -> None:
    result = load("""
        vrrp_instance A {
          interface eth0
          virtual_router_id 51
          virtual_ipaddress {
            10.0.0.1
          }
        }
        vrrp_instance B {
          interface eth0
          virtual_router_id 51
          virtual_ipaddress {
            10.0.0.2
          }
        }
        vrrp_instance C {
          interface eth1
          virtual_router_id 51
          virtual_ipaddress {
            10.0.0.3
          }
        }
    """)
    assert [i.name for i in result.config.vrrp_instances] == ["A", "C"]
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR
    assert "A and B both use VRID 51 with IPv4 on interface eth0" in d.message
    assert d.pos.line == 9


def test_unicast_instances_may_share_a_vrid_like_keepalived() -> None:
    block = ("vrrp_instance {name} {{\n interface eth0\n virtual_router_id 7\n{peers}"
             " virtual_ipaddress {{\n 10.0.0.{n}\n }}\n}}\n")
    peers = " unicast_peer {\n 10.0.0.2\n }\n"
    result = load(block.format(name="A", peers=peers, n=1) + block.format(name="B", peers="", n=2)
                  + block.format(name="C", peers=peers, n=3))
    assert [i.name for i in result.config.vrrp_instances] == ["A", "B", "C"]
    assert result.diagnostics == ()


def test_duplicate_instance_name_is_an_error() -> None:
    block = "vrrp_instance X {\n interface eth0\n virtual_router_id %d\n" \
            " virtual_ipaddress {\n 10.0.0.%d\n }\n}\n"
    result = load(block % (1, 1) + block % (2, 2))
    assert [i.virtual_router_id for i in result.config.vrrp_instances] == [1]
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and "defined twice" in d.message and d.pos.line == 8


def test_virtual_ipaddress_forms() -> None:
    inst, result = instance("""
        interface eth0
        virtual_router_id 5
        virtual_ipaddress {
          192.168.1.10
          192.168.2.10/24 brd 192.168.2.255 dev eth1 scope link label eth1:vip
          10.9.9.9/8 no_track
        }
        virtual_ipaddress_excluded {
          172.16.0.1/16
          fe80::10/64 dev eth0
          2001:db8::1
        }
    """)
    assert unacted(result) == ({"virtual_ipaddress option no_track"}, [])
    v1, v2, v5 = inst.virtual_ipaddresses
    assert v1.address == IPv4Interface("192.168.1.10/32") and v1.dev is None
    assert v2.address == IPv4Interface("192.168.2.10/24") and v2.prefixlen == 24
    assert (v2.brd, v2.dev, v2.scope, v2.label) == \
        (IPv4Address("192.168.2.255"), "eth1", "link", "eth1:vip")
    assert v5.no_track is True
    e1, e2, e3 = inst.virtual_ipaddresses_excluded
    assert e1.address == IPv4Interface("172.16.0.1/16")
    assert e2.address == IPv6Interface("fe80::10/64") and e2.dev == "eth0"
    assert e3.address == IPv6Interface("2001:db8::1/128")
    assert v2.pos is not None and (v2.pos.line, v2.pos.col) == (7, 3)


def test_invalid_vip_is_skipped_with_an_error() -> None:
    inst, result = instance("interface eth0\nvirtual_router_id 5\nvirtual_ipaddress {\n"
                            " 10.0.0.300\n 10.0.0.2\n}\n")
    assert [str(v.ip) for v in inst.virtual_ipaddresses] == ["10.0.0.2"]
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and (d.pos.line, d.pos.col) == (5, 2)
    assert "found '10.0.0.300'" in d.message


def test_ipv6_instances_default_to_vrrp_version_3() -> None:
    body = "interface eth0\nvirtual_router_id 5\n{v}virtual_ipaddress {{\n fe80::1\n}}\n"
    inst, _ = instance(body.format(v=""))
    assert inst.version == 3
    inst, _ = instance(body.format(v="version 2\n"))
    assert inst.version == 2
    inst, _ = instance(MINIMAL)
    assert inst.version == 2


def test_vip_family_must_match_the_first_vip() -> None:
    inst, result = instance("interface eth0\nvirtual_router_id 5\nvirtual_ipaddress {\n"
                            " 10.0.0.1\n 2001:db8::1\n}\n")
    assert [str(v.ip) for v in inst.virtual_ipaddresses] == ["10.0.0.1"]
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and "address family" in d.message
    assert (d.pos.line, d.pos.col) == (6, 2)


def test_bad_vip_prefix_uses_host_prefix_like_keepalived() -> None:
    inst, result = instance("interface eth0\nvirtual_router_id 5\nvirtual_ipaddress {\n"
                            " 10.0.0.1/33\n}\n")
    assert inst.virtual_ipaddresses[0].address == IPv4Interface("10.0.0.1/32")
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and "0..32" in d.message and "'10.0.0.1/33'" in d.message


def test_no_vip_is_a_warning() -> None:
    _inst, result = instance("interface eth0\nvirtual_router_id 5\n")
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "no virtual_ipaddress" in d.message


def test_authentication_and_strict_mode() -> None:
    inst, result = instance(MINIMAL + "authentication {\n auth_type PASS\n auth_pass 1111\n}\n")
    assert result.diagnostics == ()
    assert inst.authentication.auth_type is AuthType.PASS
    assert inst.authentication.auth_pass == "1111"
    inst, result = instance(MINIMAL + "authentication {\n auth_type PASS\n auth_pass p\n}\n",
                            head="global_defs {\n vrrp_strict\n}\n")
    assert inst.strict_mode is True and inst.accept is False
    assert inst.authentication.auth_type is AuthType.NONE
    names, (d,) = unacted(result)
    assert names == {"vrrp_strict"}
    assert "warning" in d and "strict mode does not support authentication" in d


def test_long_password_and_ah_warn() -> None:
    inst, result = instance(MINIMAL + "authentication {\n auth_type AH\n"
                            " auth_pass 123456789\n}\n")
    assert inst.authentication.auth_type is AuthType.AH
    msgs = [d.message for d in result.diagnostics]
    assert any("auth_type AH" in m and "not acted on" in m for m in msgs)
    assert any("longer than 8 bytes" in m for m in msgs)


def test_accept_strict_mode_and_preemption_keywords() -> None:
    inst, _ = instance(MINIMAL + "strict_mode\naccept\nnopreempt\npreempt_delay 30\n")
    assert (inst.strict_mode, inst.accept, inst.nopreempt, inst.preempt_delay) == \
        (True, True, True, 30.0)
    inst, _ = instance(MINIMAL + "no_accept\n")
    assert inst.accept is False
    inst, _ = instance(MINIMAL + "strict_mode off\n")
    assert inst.strict_mode is False and inst.accept is True


def test_nopreempt_with_priority_255_is_reset_like_keepalived() -> None:
    inst, result = instance("state MASTER\nnopreempt\n" + MINIMAL)
    assert inst.nopreempt is False
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "priority 255" in d.message


def test_nopreempt_with_state_master_is_cleared_like_keepalived() -> None:
    inst, result = instance("state MASTER\npriority 150\nnopreempt\n" + MINIMAL)
    assert inst.nopreempt is False and inst.state is InitialState.MASTER
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "nopreempt will not work" in d.message
    inst, result = instance("state BACKUP\npriority 150\nnopreempt\n" + MINIMAL)
    assert inst.nopreempt is True and result.diagnostics == ()


def test_strict_mode_master_must_be_address_owner() -> None:
    inst, result = instance("state MASTER\npriority 150\nstrict_mode on\nnopreempt\n" + MINIMAL)
    assert inst.state is InitialState.BACKUP and inst.nopreempt is True
    names, (d,) = unacted(result)
    assert names == {"strict_mode"}
    assert "error" in d and "needs priority 255" in d
    inst, result = instance("state MASTER\nstrict_mode\n" + MINIMAL)
    assert inst.state is InitialState.MASTER and inst.priority == 255


def test_tracking_lists_with_weights() -> None:
    inst, result = instance(MINIMAL + """
        track_interface {
          eth1
          eth2 weight -20
          eth3 weight 10 reverse
        }
        track_script {
          chk weight 5
          chk2
        }
        track_file {
          tf weight -3
        }
        dont_track_primary
    """, head="vrrp_script chk {\n script /bin/true\n}\nvrrp_script chk2 {\n script /bin/true\n}\n"
              "track_file tf {\n file /tmp/x\n}\n")
    assert result.diagnostics == ()
    assert [(t.name, t.weight, t.reverse) for t in inst.track_interfaces] == \
        [("eth1", 0, False), ("eth2", -20, False), ("eth3", 10, True)]
    assert [(t.name, t.weight) for t in inst.track_scripts] == [("chk", 5), ("chk2", None)]
    assert [(t.name, t.weight) for t in inst.track_files] == [("tf", -3)]
    assert inst.dont_track_primary is True


def test_tracking_weight_out_of_range_and_unknown_script() -> None:
    inst, result = instance(MINIMAL + "track_script {\n nosuch\n chk weight 300\n}\n",
                            head="vrrp_script chk {\n script /bin/true\n}\n")
    assert inst.track_scripts == ()
    errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    assert len(errors) == 2
    assert "-253..253" in errors[0].message and errors[0].pos.line == 12
    assert "track_script 'nosuch' not found" in errors[1].message
    assert (errors[1].pos.line, errors[1].pos.col) == (11, 2)  # the reference itself


def test_unicast_and_mcast_src() -> None:
    inst, result = instance(MINIMAL + "unicast_src_ip 10.0.0.5\nunicast_peer {\n 10.0.0.6\n"
                            " 10.0.0.7\n}\nmcast_src_ip 10.0.0.5\n")
    assert result.diagnostics == ()
    assert inst.unicast_src_ip == IPv4Address("10.0.0.5")
    assert [p.address for p in inst.unicast_peers] == [IPv4Address("10.0.0.6"),
                                                       IPv4Address("10.0.0.7")]
    assert inst.uses_unicast and inst.mcast_src_ip == IPv4Address("10.0.0.5")


def test_notify_commands_split_into_argv_user_group() -> None:
    inst, result = instance(MINIMAL + """
        notify_master "/etc/k/notify.sh master 'two words'" keepalived_script users
        notify_backup /etc/k/backup.sh
        notify_fault "/etc/k/fault.sh"
        notify_stop /etc/k/stop.sh root
        notify /etc/k/any.sh
        smtp_alert
    """)
    assert unacted(result) == (set(), [])
    assert inst.notify_master is not None
    assert inst.notify_master.argv == ("/etc/k/notify.sh", "master", "two words")
    assert (inst.notify_master.user, inst.notify_master.group) == ("keepalived_script", "users")
    assert inst.notify_backup is not None and inst.notify_backup.argv == ("/etc/k/backup.sh",)
    assert inst.notify_fault is not None and inst.notify_fault.argv == ("/etc/k/fault.sh",)
    assert inst.notify_stop is not None and inst.notify_stop.user == "root"
    assert inst.notify is not None and inst.smtp_alert is True


def test_advert_int_version_and_fractional_warning() -> None:
    inst, result = instance(MINIMAL + "advert_int 3\nversion 3\n")
    assert (inst.advert_int, inst.version) == (3.0, 3) and result.diagnostics == ()
    inst, result = instance(MINIMAL + "advert_int 0.5\n")
    assert inst.advert_int == 1.0
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "rounded to 1" in d.message
    inst, _ = instance(MINIMAL + "advert_int 2.6\n")
    assert inst.advert_int == 3.0
    inst, result = instance(MINIMAL + "version 3\nadvert_int 0.5\n")
    assert inst.advert_int == 0.5 and result.diagnostics == ()
    inst, result = instance(MINIMAL + "advert_int abc\n")
    assert inst.advert_int == 1.0 and result.diagnostics[0].severity is Severity.ERROR


def test_parsed_but_not_acted_keywords_warn() -> None:
    inst, result = instance(MINIMAL + "use_vmac vrrp51\ndebug\nvirtual_routes {\n"
                            " 10.1.0.0/16 via 10.0.0.254 dev eth0\n src 10.0.0.5 default"
                            " via 10.0.0.1\n blackhole 10.2.0.0/16\n}\n")
    assert inst.use_vmac is True and inst.vmac_name == "vrrp51" and inst.debug == 1
    r1, r2, r3 = inst.virtual_routes
    assert r1.to == IPv4Network("10.1.0.0/16") and r1.via == IPv4Address("10.0.0.254")
    assert r1.dev == "eth0"
    assert r2.to == IPv4Network("0.0.0.0/0") and r2.src == IPv4Address("10.0.0.5")
    assert r3.type == "blackhole"
    warned = {d.message.split("'")[1] for d in result.diagnostics
              if "not acted on yet" in d.message}
    assert warned == {"use_vmac", "debug", "virtual_routes"}
    assert all(d.severity is Severity.WARNING for d in result.diagnostics)


def test_lvs_sync_daemon_interface_is_deprecated() -> None:
    inst, result = instance(MINIMAL + "lvs_sync_daemon_interface eth1\n")
    assert inst.lvs_sync_daemon_interface == "eth1"
    assert any("deprecated" in d.message for d in result.diagnostics)
    assert all(d.severity is Severity.WARNING for d in result.diagnostics)


def test_scripts_without_script_security_warn_like_keepalived_exit_6() -> None:
    result = load_text("vrrp_instance VI_1 {\n" + MINIMAL + "notify_master /bin/true\n}\n",
                       filename="t.conf")
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and "enable_script_security" in d.message
    assert (d.pos.line, d.pos.col) == (7, 15)


def test_unknown_instance_keyword_suggests() -> None:
    _inst, result = instance(MINIMAL + "virtual_routr_id 7\n")
    (d,) = result.diagnostics
    assert d.severity is Severity.WARNING and d.pos.line == 7
    assert d.hint == "did you mean 'virtual_router_id'?"


def test_referenced_interfaces_point_at_the_lines_naming_them() -> None:
    inst, result = instance("interface eth0\nvirtual_router_id 5\nvirtual_ipaddress {\n"
                            " 10.0.0.1/24 dev eth3\n}\ntrack_interface {\n eth2 weight 5\n}\n")
    where = {name: (pos.line, pos.col) for name, pos in
             referenced_interfaces(result.config).items() if pos is not None}
    assert where == {"eth0": (2, 1), "eth3": (5, 2), "eth2": (8, 2)}
    assert inst.interface_pos is not None and inst.interface_pos.line == 2


def test_commands_in_use_lists_every_script_keepalived_would_run() -> None:
    config, _ = load("""
        vrrp_script used {
          script /bin/used
        }
        vrrp_script unused {
          script /bin/unused
        }
        vrrp_instance VI_1 {
          interface eth0
          virtual_router_id 5
          notify_master /bin/nm
          track_script {
            used
          }
          virtual_ipaddress {
            10.0.0.1
          }
        }
        virtual_server 10.0.0.1 80 {
          protocol TCP
          quorum_up /bin/qu
          real_server 10.0.0.2 80 {
            notify_down /bin/nd
            MISC_CHECK {
              misc_path /bin/misc
            }
          }
        }
    """)
    assert sorted(c.argv[0] for c in commands_in_use(config)) == \
        ["/bin/misc", "/bin/nd", "/bin/nm", "/bin/qu", "/bin/used"]
