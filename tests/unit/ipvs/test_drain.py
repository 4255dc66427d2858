from __future__ import annotations

import socket
from ipaddress import IPv4Address

from ipvs.drain import leaving_services, with_drains
from ipvs.model import (
    Destination,
    DestKey,
    ObservedDestination,
    ObservedService,
    Protocol,
    Service,
    ServiceKey,
)
from ipvs.reconcile import DelDest, DesiredService, EditDest, apply, plan

KEY = ServiceKey(socket.AF_INET, Protocol.TCP, IPv4Address("10.0.0.10"), 80)
SVC = Service(KEY, "rr")
D1 = Destination(DestKey(IPv4Address("10.0.0.1"), 80), weight=3)
D2 = Destination(DestKey(IPv4Address("10.0.0.2"), 80), weight=3)


def observed(active: int, inactive: int = 0, w2: int = 3) -> dict[ServiceKey, ObservedService]:
    d2 = Destination(D2.key, weight=w2)
    return {KEY: ObservedService(SVC, (ObservedDestination(D1),
                                       ObservedDestination(d2, active, inactive)))}


DESIRED = {KEY: DesiredService(SVC, (D1,))}


def test_busy_destination_drains_at_weight_zero_then_deleted_when_idle() -> None:
    r = with_drains(DESIRED, observed(2), {}, now=100.0, timeout=30.0)
    assert r.deadlines == {(KEY, D2.key): 130.0}
    ops = plan(r.desired, observed(2), {KEY})
    assert ops == [EditDest(KEY, Destination(D2.key, weight=0))]
    after = apply(observed(2), ops)
    assert plan(with_drains(DESIRED, after, r.deadlines, now=110.0, timeout=30.0).desired,
                after, {KEY}) == []
    # connections gone (inactive counts too): deleted
    r2 = with_drains(DESIRED, observed(0, 0, w2=0), r.deadlines, now=111.0, timeout=30.0)
    assert r2.deadlines == {}
    assert plan(r2.desired, observed(0, 0, w2=0), {KEY}) == [DelDest(KEY, D2.key)]


def test_inactive_connections_keep_draining_until_timeout() -> None:
    r = with_drains(DESIRED, observed(0, 4, w2=0), {(KEY, D2.key): 130.0}, now=129.9,
                    timeout=30.0)
    assert r.draining == {(KEY, D2.key)}
    r = with_drains(DESIRED, observed(0, 4, w2=0), {(KEY, D2.key): 130.0}, now=130.0,
                    timeout=30.0)
    assert r.draining == frozenset()
    assert plan(r.desired, observed(0, 4, w2=0), {KEY}) == [DelDest(KEY, D2.key)]


def test_idle_destination_and_disabled_drain_delete_at_once() -> None:
    assert with_drains(DESIRED, observed(0), {}, now=0.0, timeout=30.0).desired == DESIRED
    assert with_drains(DESIRED, observed(5), {}, now=0.0, timeout=0.0).desired == DESIRED


def test_service_going_away_is_not_drained() -> None:
    r = with_drains({}, observed(5), {}, now=0.0, timeout=30.0)
    assert r.desired == {} and r.deadlines == {}


def test_leaving_services_are_those_losing_a_destination_not_yet_draining() -> None:
    k1 = ServiceKey(socket.AF_INET, Protocol.TCP, IPv4Address("10.0.0.1"), 80)
    k2 = ServiceKey(socket.AF_INET, Protocol.TCP, IPv4Address("10.0.0.2"), 80)
    a = Destination(DestKey(IPv4Address("10.1.0.1"), 80))
    b = Destination(DestKey(IPv4Address("10.1.0.2"), 80))
    observed = {k: ObservedService(Service(k), (ObservedDestination(a), ObservedDestination(b)))
                for k in (k1, k2)}
    desired = {k1: DesiredService(Service(k1), (a,)), k2: DesiredService(Service(k2), (a, b))}
    assert leaving_services(desired, observed) == [k1]
    assert leaving_services(desired, observed, [(k1, b.key)]) == []  # already draining
    assert leaving_services({}, observed) == []  # a service going away is not drained
