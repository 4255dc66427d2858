"""The demo's configs: the seed 000 files adapted to the namespaces, still loadable as such."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from vrrpd.config.errors import Severity
from vrrpd.config.loader import load_text
from vrrpd.demo.topology import NODES, SEED_BACKUP, SEED_DIR, SEED_MASTER, VIP, derive_config


@pytest.mark.parametrize(("seed", "state", "priority"),
                         [(SEED_MASTER, "MASTER", 100), (SEED_BACKUP, "BACKUP", 99)])
def test_derived_config_keeps_the_seed_and_adapts_interface(seed: str, state: str,
                                                            priority: int) -> None:
    text = derive_config((SEED_DIR / seed).read_text())
    assert "eno16777736" not in text
    config, diags = load_text(text, filename=seed)
    assert [d for d in diags if d.severity >= Severity.ERROR] == []
    (inst,) = config.vrrp_instances
    assert (inst.interface, inst.virtual_router_id, inst.priority) == ("eth0", 51, priority)
    assert inst.state.name == state
    assert [str(v.address.ip) for v in inst.virtual_ipaddresses] == [VIP]
    (vs,) = config.virtual_servers
    assert (str(vs.address), vs.port, vs.persistence_timeout) == (VIP, 8066, None)
    assert vs.lvs_method.name == "DR" and vs.scheduler.name == "RR"
    reals = {(str(rs.address), rs.port): rs for rs in vs.real_servers}
    assert set(reals) == {(n.ip, 8066) for n in NODES if n.role == "real_server"}
    for rs in reals.values():
        (check,) = rs.checkers
        assert check.kind == "TCP_CHECK"
        # the seed's nb_get_retry 3 is ignored, as keepalived 2.2.7 ignores it in TCP_CHECK
        assert (check.connect_port, check.connect_timeout, check.retry) == (8066, 3.0, 1)


def test_persistence_kept_on_request() -> None:
    text = derive_config((SEED_DIR / SEED_MASTER).read_text(), persistence=True)
    config, _ = load_text(text)
    assert config.virtual_servers[0].persistence_timeout == 50


def test_node_addresses_are_the_seeds() -> None:
    assert {n.name: n.ip for n in NODES} == {
        "dir1": "192.168.244.146", "dir2": "192.168.244.147",
        "rs1": "192.168.244.148", "rs2": "192.168.244.149",
    }
    assert all(ip_address(n.ip) != ip_address(VIP) for n in NODES)
