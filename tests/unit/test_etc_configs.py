"""Every shipped etc/*.conf (the seed scenarios) passes ``vrrpd -t`` with no ERROR/FATAL,
and reads as the blog posts describe (keepalived 1.2 keywords accepted with a warning)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from vrrpd.config.check import load_for_check, run_check
from vrrpd.config.errors import Severity

ETC = Path(__file__).resolve().parents[2] / "etc"
CONFS = sorted(ETC.glob("*.conf"))

# name -> (state, priority, interface, VIPs, virtual servers as (addr, port, sched, method,
#          [(rs addr, weight, checker kinds)]))
EXPECTED = {
    "seed000-mycat-master.conf": ("MASTER", 100, "eno16777736", ["192.168.244.10/32"], [
        ("192.168.244.10", 8066, "RR", "DR", [("192.168.244.148", 1, ["TCP_CHECK"]),
                                               ("192.168.244.149", 1, ["TCP_CHECK"])])]),
    "seed000-mycat-backup.conf": ("BACKUP", 99, "eno16777736", ["192.168.244.10/32"], [
        ("192.168.244.10", 8066, "RR", "DR", [("192.168.244.148", 1, ["TCP_CHECK"]),
                                               ("192.168.244.149", 1, ["TCP_CHECK"])])]),
    "seed001-haproxy-master.conf": ("MASTER", 101, "eth1", ["10.1.6.173/32"], []),
    "seed001-haproxy-backup.conf": ("BACKUP", 100, "eth1", ["10.1.6.173/32"], []),
    "seed002-mysql-master.conf": ("MASTER", 100, "ens33", ["192.168.41.222/24"], [
        ("1.0.0.3", 3306, "WRR", "DR", [("192.168.41.201", 3, ["TCP_CHECK"])])]),
    "seed002-mysql-backup.conf": ("BACKUP", 50, "ens33", ["1.0.0.122/32"], [
        ("1.0.0.122", 3306, "WRR", "DR", [("1.0.0.3", 3, ["TCP_CHECK"])])]),
    "seed003-web-master.conf": ("MASTER", 100, "eth0", ["10.0.7.247/24"], [
        ("10.0.7.247", 80, "WLC", "DR", [("10.0.7.211", 60, ["TCP_CHECK"]),
                                         ("10.0.7.29", 40, ["TCP_CHECK"])])]),
    "seed003-web-backup.conf": ("BACKUP", 50, "eth0", ["10.0.7.247/24"], [
        ("10.0.7.247", 80, "WLC", "DR", [("10.0.7.211", 60, ["TCP_CHECK"]),
                                         ("10.0.7.29", 40, ["TCP_CHECK"])])]),
}


def test_every_seed_scenario_is_shipped() -> None:
    assert sorted(p.name for p in CONFS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", CONFS, ids=lambda p: p.name)
def test_config_test_passes(path: Path) -> None:
    # The interfaces (eno16777736, ens33, ...) exist only on the blogs' hosts; the netns
    # differential test runs the full check, host interfaces included, on these files.
    out, err = io.StringIO(), io.StringIO()
    code = run_check(str(path), config_id="lb1", dump=False, out=out, err=err,
                     host_checks=False)
    errors = [line for line in err.getvalue().splitlines() if ": error: " in line]
    assert (code, errors) == (0, [])


@pytest.mark.parametrize("path", CONFS, ids=lambda p: p.name)
def test_model_matches_the_blog(path: Path) -> None:
    config, diags = load_for_check(str(path), config_id="lb1", host_checks=False)
    assert all(d.severity == Severity.WARNING for d in diags)
    state, prio, ifname, vips, servers = EXPECTED[path.name]
    (inst,) = config.vrrp_instances
    assert (inst.name, inst.state.name, inst.priority, inst.interface, inst.virtual_router_id) \
        == ("VI_1", state, prio, ifname, 51)
    assert [str(v.address) for v in inst.virtual_ipaddresses] == vips
    got = [(str(vs.address), vs.port, vs.scheduler.name, vs.lvs_method.name,
            [(str(rs.address), rs.weight, [c.kind for c in rs.checkers])
             for rs in vs.real_servers])
           for vs in config.virtual_servers]
    assert got == servers


@pytest.mark.parametrize("path", [p for p in CONFS if "nb_get_retry" in p.read_text()],
                         ids=lambda p: p.name)
def test_keepalived_1x_keywords_are_warned_and_treated_as_keepalived_2_2_7_does(path: Path
                                                                                 ) -> None:
    """nb_get_retry outside HTTP_GET/SSL_GET is unknown to keepalived 2.2.7: ignored, so retry
    keeps its default 1 (as the keepalived peer of a mixed pair does); nat_mask is ignored."""
    config, diags = load_for_check(str(path), config_id="lb1", host_checks=False)
    text = path.read_text().splitlines()
    for keyword, word in (("nb_get_retry", "ignored"), ("nat_mask", "deprecated")):
        lines = [n for n, line in enumerate(text, 1) if line.strip().startswith(keyword)]
        warned = [d.pos.line for d in diags
                  if d.severity == Severity.WARNING and keyword in d.message
                  and word in d.message]
        assert warned == lines, keyword
    for vs in config.virtual_servers:
        for rs in vs.real_servers:
            assert [c.retry for c in rs.checkers] == [1]  # nb_get_retry 3 ignored, as 2.2.7
