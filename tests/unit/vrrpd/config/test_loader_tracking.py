"""vrrp_script, track_file and vrrp_sync_group blocks and their cross-references."""

from __future__ import annotations

import textwrap

from vrrpd.config.errors import Severity
from vrrpd.config.loader import LoadResult, load_text

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


def inst(name: str, vrid: int) -> str:
    return (f"vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n"
            f" virtual_ipaddress {{\n 10.0.0.{vrid}\n }}\n}}\n")


def test_vrrp_script_defaults_and_values() -> None:
    config, diags = load("""
        vrrp_script chk_haproxy {
          script "killall -0 haproxy"
          interval 2
          weight -2
        }
        vrrp_script full {
          script "/usr/local/bin/check 'a b'"
          interval 5
          timeout 3
          weight 10 reverse
          rise 2
          fall 3
          user nobody nogroup
          init_fail
        }
    """)
    assert diags == ()
    s = config.vrrp_scripts["chk_haproxy"]
    assert s.script.argv == ("killall", "-0", "haproxy")
    assert (s.interval, s.timeout, s.weight, s.rise, s.fall) == (2.0, 2.0, -2, 1, 1)
    assert s.script.user is None and not s.weight_reverse and not s.init_fail
    f = config.vrrp_scripts["full"]
    assert f.script.argv == ("/usr/local/bin/check", "a b")
    assert (f.interval, f.timeout, f.weight, f.weight_reverse, f.rise, f.fall) == \
        (5.0, 3.0, 10, True, 2, 3)
    assert (f.script.user, f.script.group, f.init_fail) == ("nobody", "nogroup", True)


def test_vrrp_script_default_interval_is_one_second() -> None:
    s = load("vrrp_script c {\n script /bin/true\n}\n").config.vrrp_scripts["c"]
    assert (s.interval, s.timeout, s.weight) == (1.0, 1.0, 0)


def test_vrrp_script_errors() -> None:
    result = load("vrrp_script c {\n interval 2\n}\nvrrp_script d {\n script /bin/true\n"
                  " weight 254\n}\n")
    assert "c" not in result.config.vrrp_scripts
    assert result.config.vrrp_scripts["d"].weight == 0
    errs = [(d.pos.line, d.pos.col) for d in result.diagnostics if d.severity is Severity.ERROR]
    assert errs == [(1, 1), (6, 9)]
    assert "has no 'script'" in result.diagnostics[0].message
    assert "-253..253" in result.diagnostics[1].message


def test_words_after_the_script_command_are_ignored_like_keepalived() -> None:
    # keepalived 2.2.7 runs `script killall -0 haproxy` as plain `killall` (and ignores a
    # user written there: vrrp_script has its own `user` keyword): say so, suggest quoting.
    result = load('vrrp_script c {\n script killall -0 haproxy\n}\n'
                  'vrrp_script d {\n script "/bin/check x" root\n user nobody\n}\n')
    c, d = result.config.vrrp_scripts["c"], result.config.vrrp_scripts["d"]
    assert (c.script.argv, c.script.user) == (("killall",), None)
    assert (d.script.argv, d.script.user) == (("/bin/check", "x"), "nobody")
    w1, w2 = result.diagnostics
    assert w1.severity is Severity.WARNING and (w1.pos.line, w1.pos.col) == (2, 17)
    assert "ignored: '-0 haproxy'" in w1.message
    assert w1.hint == 'quote the whole command line, e.g. script "killall -0 haproxy"'
    assert w2.pos.line == 5 and "'root'" in w2.message


def test_track_file_both_spellings() -> None:
    config, diags = load("""
        track_file tf1 {
          file /var/run/tf1
          weight -10 reverse
          init_file 5 overwrite
        }
        vrrp_track_file tf2 {
          file "/var/run/tf 2"
        }
    """)
    assert diags == ()
    t1, t2 = config.track_files["tf1"], config.track_files["tf2"]
    assert (t1.file, t1.weight, t1.weight_reverse) == ("/var/run/tf1", -10, True)
    assert (t1.init_file, t1.init_value, t1.init_overwrite) == (True, 5, True)
    assert (t2.file, t2.weight, t2.init_file) == ("/var/run/tf 2", 1, False)


def test_sync_group_members_notify_and_tracking() -> None:
    config, diags = load(inst("VI_1", 1) + inst("VI_2", 2) + """
        vrrp_script chk {
          script /bin/true
        }
        vrrp_sync_group G1 {
          group {
            VI_1
            VI_2
          }
          notify_master "/bin/notify master"
          notify_backup /bin/backup
          notify_fault /bin/fault
          notify_stop /bin/stop
          notify /bin/notify
          smtp_alert
          track_script {
            chk weight 4
          }
          track_interface {
            eth1
          }
        }
    """)
    assert unacted(LoadResult(config, diags)) == (set(), [])
    g = config.vrrp_sync_groups["G1"]
    assert g.members == ("VI_1", "VI_2")
    assert g.notify_master is not None and g.notify_master.argv == ("/bin/notify", "master")
    assert g.notify_stop is not None and g.notify is not None and g.smtp_alert
    assert [(t.name, t.weight) for t in g.track_scripts] == [("chk", 4)]
    assert [t.name for t in g.track_interfaces] == ["eth1"]
    assert [i.sync_group for i in config.vrrp_instances] == ["G1", "G1"]


def test_sync_group_unknown_member_and_single_member() -> None:
    result = load(inst("VI_1", 1) + "vrrp_sync_group G {\n group {\n VI_1\n VI_X\n }\n}\n")
    g = result.config.vrrp_sync_groups["G"]
    assert g.members == ("VI_1",)
    sev = [(d.severity, d.message) for d in result.diagnostics]
    assert sev[0][0] is Severity.ERROR and "'VI_X' doesn't exist" in sev[0][1]
    assert sev[1][0] is Severity.WARNING and "only 1 vrrp_instance" in sev[1][1]
    assert result.diagnostics[0].pos.line == 8


def test_instance_in_two_sync_groups_is_an_error() -> None:
    result = load(inst("A", 1) + inst("B", 2) +
                  "vrrp_sync_group G1 {\n group {\n A\n B\n }\n}\n"
                  "vrrp_sync_group G2 {\n group {\n A\n B\n }\n}\n")
    assert "G2" not in result.config.vrrp_sync_groups
    assert sum(d.severity is Severity.ERROR for d in result.diagnostics) == 3
    assert "sync group is removed" in (result.diagnostics[-1].hint or "")
    assert {i.sync_group for i in result.config.vrrp_instances} == {"G1"}


def test_sync_group_without_group_is_an_error() -> None:
    result = load("vrrp_sync_group G {\n notify /bin/x\n}\n")
    assert result.config.vrrp_sync_groups == {}
    assert result.diagnostics[0].severity is Severity.ERROR


def test_duplicate_script_name_keeps_the_first() -> None:
    result = load("vrrp_script c {\n script /bin/a\n}\nvrrp_script c {\n script /bin/b\n}\n")
    assert result.config.vrrp_scripts["c"].script.argv == ("/bin/a",)
    (d,) = result.diagnostics
    assert d.severity is Severity.ERROR and "defined twice" in d.message and d.pos.line == 4
