from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

from healthcheck.state import HealthCore, WeightsChanged
from ipvs.listing import render
from ipvs.model import Forward, ObservedDestination, ObservedService, Protocol, TunnelType
from vrrpd.config.loader import load_text
from vrrpd.config.model import Config
from vrrpd.lvs_checks import health_specs
from vrrpd.lvs_desired import CompileCache, DesiredCache, ServerKey, compile_config, desired

SEED = """
virtual_server 192.168.244.10 8066 {
    delay_loop 6
    lb_algo rr
    lb_kind DR
    persistence_timeout 50
    protocol TCP
    real_server 192.168.244.148 8066 {
        weight 1
        TCP_CHECK {
            connect_timeout 3
            retry 3
            delay_before_retry 3
            connect_port 8066
        }
    }
    real_server 192.168.244.149 8066 {
        weight 1
        TCP_CHECK {
            connect_timeout 3
            connect_port 8066
        }
    }
}
"""

MIXED = """
virtual_server_group G1 {
    10.0.0.1-3 80
    10.0.1.1 443
    fwmark 7
}
virtual_server group G1 {
    lb_algo sh
    sh-port
    sh-fallback
    lb_kind NAT
    protocol TCP
    real_server 10.1.0.1 80 {
        weight 3
    }
}
virtual_server fwmark 9 {
    ip_family inet6
    lb_algo wrr
    persistence_timeout 30
    persistence_granularity 64
    lb_kind TUN
    real_server 2001:db8::1 0 {
        weight 2
    }
}
virtual_server 10.0.0.20 5060 {
    protocol UDP
    lb_algo rr
    ops
    persistence_timeout
    persistence_granularity 255.255.255.0
    persistence_engine sip
    lvs_method TUN type gue port 6080 csum
    real_server 10.1.0.5 5060 {
        uthreshold 100
        lthreshold 10
    }
}
virtual_server 10.0.0.30 80 {
    protocol TCP
    quorum 3
    sorry_server 10.9.9.9 80
    lb_kind DR
    real_server 10.1.0.6 80 {
        weight 1
    }
    real_server 10.1.0.7 80 {
        weight 1
        alpha
        inhibit_on_failure
        TCP_CHECK {
        }
    }
    real_server 10.1.0.8 80 {
        weight 1
        TCP_CHECK {
           alpha
        }
    }
}
"""


def config(text: str) -> Config:
    return load_text(text).config


def test_seed_scenario_is_the_seed_listing() -> None:
    want = desired(compile_config(config(SEED)), {})
    (svc,) = want.values()
    assert svc.service.key.addr == IPv4Address("192.168.244.10")
    assert (svc.service.scheduler, svc.service.timeout) == ("rr", 50)
    # checkers have not run yet: keepalived adds both real servers at once
    observed = [ObservedService(svc.service, tuple(ObservedDestination(d) for d in svc.dests))]
    lines = render(observed).splitlines()[3:]
    assert [line.split() for line in lines] == [
        ["TCP", "192.168.244.10:8066", "rr", "persistent", "50"],
        ["->", "192.168.244.148:8066", "Route", "1", "0", "0"],
        ["->", "192.168.244.149:8066", "Route", "1", "0", "0"],
    ]


def test_groups_fwmarks_flags_persistence_and_tunnels() -> None:
    want = desired(compile_config(config(MIXED)), {})
    by_name = {(k.addr, k.port, k.fwmark): v for k, v in want.items()}
    group = [by_name[(IPv4Address(f"10.0.0.{i}"), 80, 0)] for i in (1, 2, 3)]
    group += [by_name[(IPv4Address("10.0.1.1"), 443, 0)], by_name[(None, 0, 7)]]
    for g in group:
        assert g.service.scheduler == "sh"
        assert g.service.flags == {"sched-flag-1", "sched-flag-2"}
        assert [(d.key.addr, d.weight, d.forward) for d in g.dests] == [
            (IPv4Address("10.1.0.1"), 3, Forward.NAT)]
    fw9 = by_name[(None, 0, 9)]
    assert fw9.service.key.af == socket.AF_INET6
    assert (fw9.service.flags, fw9.service.timeout, fw9.service.netmask) == (
        {"persistent"}, 30, 64)
    assert fw9.dests[0].key.addr == IPv6Address("2001:db8::1")
    assert fw9.dests[0].forward == Forward.TUN
    sip = by_name[(IPv4Address("10.0.0.20"), 5060, 0)]
    assert sip.service.key.protocol == Protocol.UDP
    assert sip.service.flags == {"persistent", "onepacket"}
    assert (sip.service.timeout, sip.service.netmask, sip.service.pe_name) == (360, 24, "sip")
    (d,) = sip.dests
    assert (d.forward, d.tun_type, d.tun_port, d.tun_flags) == (Forward.TUN, TunnelType.GUE,
                                                                6080, 1)
    assert (d.u_threshold, d.l_threshold) == (100, 10)
    assert len(want) == 8


def test_alpha_inhibit_quorum_and_sorry_server_at_start() -> None:
    want = desired(compile_config(config(MIXED)), {})
    q = next(v for k, v in want.items() if k.addr == IPv4Address("10.0.0.30"))
    # .6 alive (weight 1) < quorum 3 -> the sorry server replaces the pool; .7 is alpha +
    # inhibit_on_failure -> stays at 0; .8 alpha -> absent
    assert {(d.key.addr, d.weight) for d in q.dests} == {
        (IPv4Address("10.1.0.7"), 0), (IPv4Address("10.9.9.9"), 1)}


def test_initial_weights_agree_with_the_health_core() -> None:
    for text in (SEED, MIXED):
        cfg = config(text)
        actions = HealthCore(health_specs(cfg)).start(0.0)
        core = {a.vs_key: dict(a.servers) for a in actions if isinstance(a, WeightsChanged)}
        assert core == {c.vs_key: dict(c.initial) for c in compile_config(cfg)}


def test_checker_weights_drive_the_destinations() -> None:
    compiled = compile_config(config(SEED))
    key = compiled[0].vs_key
    rs148 = (IPv4Address("192.168.244.148"), 8066)
    stale = (IPv4Address("10.9.9.9"), 1)  # unknown to the config: ignored
    (svc,) = desired(compiled, {key: {rs148: 5, stale: 1}}).values()
    assert [(d.key.addr, d.weight) for d in svc.dests] == [(IPv4Address("192.168.244.148"), 5)]
    (svc,) = desired(compiled, {key: {}}).values()
    assert svc.dests == ()


def test_a_reload_recompiles_only_the_virtual_servers_that_changed() -> None:
    cache: CompileCache = {}
    before = compile_config(config(MIXED), cache)
    assert compile_config(config(MIXED), cache) == before  # a fresh parse, equal
    again = compile_config(config(MIXED), cache)
    assert all(a is b for a, b in zip(again, before, strict=True))  # the very objects
    changed_text = MIXED.replace("lb_algo", "lb_algo wlc\n    #", 1)
    changed = compile_config(config(changed_text), cache)
    fresh = compile_config(config(changed_text))
    assert changed == fresh
    same = [a is b for a, b in zip(changed, before, strict=True)]
    assert same.count(False) == 1, same  # the edited virtual server alone
    assert changed[same.index(False)].services[0].scheduler == "wlc"


def test_unchanged_weights_keep_their_destination_objects() -> None:
    compiled = compile_config(config(SEED))
    key = compiled[0].vs_key
    rs148: ServerKey = (IPv4Address("192.168.244.148"), 8066)
    rs149: ServerKey = (IPv4Address("192.168.244.149"), 8066)
    cache: DesiredCache = {}
    weights: dict[str, dict[ServerKey, int]] = {key: {rs148: 5, rs149: 1}}
    (first,) = desired(compiled, weights, cache).values()
    (second,) = desired(compiled, weights, cache).values()
    assert second.dests is first.dests  # the same weights mapping: nothing rebuilt
    assert second == desired(compiled, weights)[first.key]  # equal to the uncached result
    (third,) = desired(compiled, {key: dict(weights[key])}, cache).values()
    assert third == first and third.dests is not first.dests  # a new mapping: rebuilt
    (initial,) = desired(compiled, {}, cache).values()
    assert initial.dests is compiled[0].initial_dests
    assert [(d.key.addr, d.weight) for d in initial.dests] == [
        (IPv4Address("192.168.244.148"), 1), (IPv4Address("192.168.244.149"), 1)]
