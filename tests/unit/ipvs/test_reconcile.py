from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvs.model import (
    Destination,
    DestKey,
    Forward,
    ObservedDestination,
    ObservedService,
    Protocol,
    Service,
    ServiceKey,
)
from ipvs.reconcile import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    DesiredService,
    EditDest,
    EditService,
    Flush,
    apply,
    desired_state,
    observed_state,
    plan,
    same_dest,
    same_service,
    stop_plan,
)

VIP = IPv4Address("192.168.244.10")
RS1 = IPv4Address("192.168.244.148")
RS2 = IPv4Address("192.168.244.149")
KEY = ServiceKey(socket.AF_INET, Protocol.TCP, VIP, 8066)
SVC = Service(KEY, scheduler="rr", flags=frozenset({"persistent"}), timeout=50)
D1 = Destination(DestKey(RS1, 8066), weight=1)
D2 = Destination(DestKey(RS2, 8066), weight=1)


def kernel(*services: ObservedService) -> dict[ServiceKey, ObservedService]:
    return observed_state(services)


def obs(svc: Service, *dests: Destination, conns: int = 0) -> ObservedService:
    return ObservedService(svc, tuple(ObservedDestination(d, active_conns=conns) for d in dests))


def test_cold_start_adds_service_before_its_destinations() -> None:
    desired = desired_state([DesiredService(SVC, (D1, D2))])
    assert plan(desired, {}, set()) == [AddService(SVC), AddDest(KEY, D1), AddDest(KEY, D2)]


def test_equal_state_is_empty_plan_even_with_kernel_flags_and_counters() -> None:
    desired = desired_state([DesiredService(SVC, (D1, D2))])
    hashed = Service(KEY, scheduler="rr", flags=frozenset({"persistent", "hashed"}), timeout=50)
    observed = kernel(obs(hashed, D1, D2, conns=7))
    assert plan(desired, observed, {KEY}) == []


def test_adopts_matching_entries_without_owning_them_before() -> None:
    desired = desired_state([DesiredService(SVC, (D1, D2))])
    assert plan(desired, kernel(obs(SVC, D1, D2)), set()) == []


def test_one_weight_change_is_one_edit_with_the_full_destination() -> None:
    d2 = Destination(DestKey(RS2, 8066), weight=5)
    desired = desired_state([DesiredService(SVC, (D1, d2))])
    assert plan(desired, kernel(obs(SVC, D1, D2)), {KEY}) == [EditDest(KEY, d2)]


def test_service_edit_sends_the_full_service() -> None:
    wrr = Service(KEY, scheduler="wrr")
    desired = desired_state([DesiredService(wrr, (D1,))])
    assert plan(desired, kernel(obs(SVC, D1)), {KEY}) == [EditService(wrr)]


def test_pool_swap_adds_before_deleting() -> None:
    desired = desired_state([DesiredService(SVC, (D2,))])
    assert plan(desired, kernel(obs(SVC, D1)), {KEY}) == [AddDest(KEY, D2), DelDest(KEY, D1.key)]


def test_repairs_deleted_destination_and_flushed_table() -> None:
    desired = desired_state([DesiredService(SVC, (D1, D2))])
    assert plan(desired, kernel(obs(SVC, D1)), {KEY}) == [AddDest(KEY, D2)]
    assert plan(desired, {}, {KEY}) == [AddService(SVC), AddDest(KEY, D1), AddDest(KEY, D2)]


def test_foreign_service_left_alone_and_owned_leftover_deleted_whole() -> None:
    foreign = Service(ServiceKey(socket.AF_INET, Protocol.UDP, VIP, 53))
    old = Service(ServiceKey(socket.AF_INET, Protocol.TCP, VIP, 80))
    desired = desired_state([DesiredService(SVC, (D1,))])
    observed = kernel(obs(foreign, D1), obs(old, D1, D2), obs(SVC, D1))
    assert plan(desired, observed, {KEY, old.key}) == [DelService(old.key)]


def test_forward_method_change_is_an_edit_and_tunnel_fields_ignored_unless_tun() -> None:
    nat = Destination(D1.key, forward=Forward.NAT)
    assert plan(desired_state([DesiredService(SVC, (nat,))]), kernel(obs(SVC, D1)), {KEY}) == [
        EditDest(KEY, nat)
    ]
    assert same_dest(D1, Destination(D1.key, tun_port=99), socket.AF_INET)
    tun = Destination(D1.key, forward=Forward.TUN)
    assert not same_dest(tun, Destination(D1.key, forward=Forward.TUN, tun_port=99), 2)
    assert same_dest(D1, Destination(D1.key, af=socket.AF_INET), socket.AF_INET)


def test_same_service_ignores_hashed_only() -> None:
    assert same_service(SVC, Service(KEY, "rr", frozenset({"persistent", "hashed"}), 50))
    assert not same_service(SVC, Service(KEY, "rr", frozenset({"persistent"}), 60))
    assert not same_service(SVC, Service(KEY, "rr", frozenset({"persistent"}), 50, netmask=24))
    assert not same_service(SVC, Service(KEY, "rr", frozenset({"persistent"}), 50, pe_name="sip"))


def test_stop_plan_modes() -> None:
    foreign = Service(ServiceKey(socket.AF_INET, Protocol.UDP, VIP, 53))
    observed = kernel(obs(SVC, D1, D2), obs(foreign, D1))
    assert stop_plan(observed, {KEY}) == [DelDest(KEY, D1.key), DelDest(KEY, D2.key),
                                          DelService(KEY)]
    assert stop_plan(observed, {KEY}, mode="services") == [DelService(KEY)]
    assert stop_plan(observed, {KEY}, mode="flush") == [Flush()]
    assert stop_plan(observed, {KEY}, mode="keep") == []
    assert stop_plan({}, {KEY}) == []
    with pytest.raises(ValueError):
        stop_plan(observed, {KEY}, mode="bogus")


def test_apply_matches_kernel_semantics() -> None:
    table = apply({}, [AddService(SVC), AddDest(KEY, D1)])
    with pytest.raises(ValueError):
        apply(table, [AddDest(KEY, D1)])
    with pytest.raises(ValueError):
        apply(table, [AddService(SVC)])
    with pytest.raises(KeyError):
        apply(table, [DelDest(KEY, D2.key)])
    assert apply(table, [DelService(KEY)]) == {}
    assert apply(table, [Flush()]) == {}


# ---- properties ---------------------------------------------------------------------------

ADDRS = [IPv4Address(f"10.0.0.{i}") for i in range(1, 5)]
ADDRS6 = [IPv6Address(f"2001:db8::{i}") for i in range(1, 3)]

service_keys = st.one_of(
    st.builds(lambda a, p, port: ServiceKey(socket.AF_INET, p, a, port),
              st.sampled_from(ADDRS), st.sampled_from(list(Protocol)), st.sampled_from([80, 443])),
    st.builds(lambda a: ServiceKey(socket.AF_INET6, Protocol.TCP, a, 80), st.sampled_from(ADDRS6)),
    st.builds(lambda m: ServiceKey(socket.AF_INET, fwmark=m), st.integers(1, 3)),
)


def services(key: ServiceKey) -> st.SearchStrategy[Service]:
    persistent = st.sampled_from([frozenset(), frozenset({"persistent"}),
                                  frozenset({"persistent", "hashed"})])
    return st.builds(lambda sch, fl, t: Service(key, sch, fl, t if "persistent" in fl else 0),
                     st.sampled_from(["rr", "wlc", "sh"]), persistent, st.sampled_from([0, 50]))


dest_keys = st.builds(DestKey, st.sampled_from(ADDRS), st.sampled_from([80, 8080]))
dests = st.builds(lambda k, w, f: Destination(k, weight=w, forward=f), dest_keys,
                  st.integers(0, 3), st.sampled_from([Forward.DR, Forward.NAT]))


@st.composite
def tables(draw: st.DrawFn) -> dict[ServiceKey, DesiredService]:
    keys = draw(st.lists(service_keys, unique=True, max_size=4))
    out = {}
    for k in keys:
        ds = draw(st.lists(dests, unique_by=lambda d: d.key, max_size=4))
        out[k] = DesiredService(draw(services(k)), tuple(ds))
    return out


def as_observed(t: dict[ServiceKey, DesiredService]) -> dict[ServiceKey, ObservedService]:
    return {k: ObservedService(v.service, tuple(ObservedDestination(d, active_conns=1)
                                                for d in v.dests)) for k, v in t.items()}


def controlled(o: ObservedService) -> tuple[object, ...]:
    s = o.service
    return (s.key, s.scheduler, s.flags - {"hashed"}, s.timeout, s.netmask,
            {d.dest.key: (d.dest.weight, d.dest.forward) for d in o.dests})


@settings(max_examples=300, deadline=None)
@given(tables(), tables(), st.sets(service_keys, max_size=4))
def test_plan_reaches_desired_on_owned_and_leaves_foreign_untouched(
    desired: dict[ServiceKey, DesiredService],
    before: dict[ServiceKey, DesiredService],
    extra_owned: set[ServiceKey],
) -> None:
    observed = as_observed(before)
    owned = set(desired) | extra_owned
    ops = plan(desired, observed, owned)
    after = apply(observed, ops)  # raises if an op is out of order (dest before service...)
    for key, want in desired.items():
        assert controlled(after[key]) == controlled(as_observed({key: want})[key])
    for key in owned - desired.keys():
        assert key not in after
    for key in observed.keys() - owned:
        assert after[key] == observed[key]  # foreign: identical, counters included
    assert plan(desired, after, owned) == []
    # every op touches an owned/desired service only
    for op in ops:
        k = op.service.key if isinstance(op, (AddService, EditService)) else (
            op.key if isinstance(op, DelService) else getattr(op, "service", None))
        assert k in owned


@settings(max_examples=200, deadline=None)
@given(tables())
def test_plan_of_equal_states_is_empty(t: dict[ServiceKey, DesiredService]) -> None:
    assert plan(t, as_observed(t), set(t)) == []
    assert plan(t, as_observed(t), set()) == []


@settings(max_examples=200, deadline=None)
@given(tables(), tables())
def test_stop_plan_removes_exactly_owned(
    mine: dict[ServiceKey, DesiredService], other: dict[ServiceKey, DesiredService]
) -> None:
    observed = as_observed({**other, **mine})
    for mode in ("dests", "services"):
        after = apply(observed, stop_plan(observed, set(mine), mode=mode))
        assert set(after) == set(observed) - set(mine)


def reference_apply(observed: dict[ServiceKey, ObservedService],
                    ops: list[object]) -> dict[ServiceKey, ObservedService]:
    """The op semantics one op at a time, the obvious way (apply() batches per service)."""
    from dataclasses import replace

    table = dict(observed)
    for op in ops:
        if isinstance(op, Flush):
            table = {}
        elif isinstance(op, AddService):
            if op.service.key in table:
                raise ValueError("service exists")
            table[op.service.key] = ObservedService(op.service)
        elif isinstance(op, EditService):
            table[op.service.key] = replace(table[op.service.key], service=op.service)
        elif isinstance(op, DelService):
            del table[op.key]
        else:
            have = table[op.service]  # type: ignore[attr-defined]
            dests = {o.dest.key: o for o in have.dests}
            if isinstance(op, AddDest):
                if op.dest.key in dests:
                    raise ValueError("destination exists")
                dests[op.dest.key] = ObservedDestination(op.dest)
            elif isinstance(op, EditDest):
                dests[op.dest.key] = replace(dests[op.dest.key], dest=op.dest)
            else:
                del dests[op.dest]  # type: ignore[attr-defined]
            table[op.service] = replace(have, dests=tuple(dests.values()))  # type: ignore[attr-defined]
    return table


def ops_on(pool: list[ServiceKey]) -> st.SearchStrategy[list[object]]:
    key = st.sampled_from(pool)  # the same key objects again and again (runs, as plan emits)
    return st.lists(st.one_of(
        st.builds(AddService, key.flatmap(services)),
        st.builds(EditService, key.flatmap(services)),
        st.builds(DelService, key),
        st.builds(AddDest, key, dests), st.builds(EditDest, key, dests),
        st.builds(DelDest, key, dest_keys), st.just(Flush())), max_size=14)


random_ops = st.lists(service_keys, min_size=1, max_size=3).flatmap(ops_on)


@settings(max_examples=400, deadline=None)
@given(tables(), random_ops)
def test_apply_equals_the_one_op_at_a_time_semantics(
        before: dict[ServiceKey, DesiredService], ops: list[object]) -> None:
    observed = as_observed(before)
    try:
        want = reference_apply(observed, ops)
    except (KeyError, ValueError) as exc:
        with pytest.raises(type(exc)):
            apply(observed, ops)  # type: ignore[arg-type]
        return
    assert apply(observed, ops) == want  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(tables(), st.randoms(use_true_random=False))
def test_our_own_objects_in_any_order_are_recognised_without_ops(
        t: dict[ServiceKey, DesiredService], rnd: object) -> None:
    shuffled = {}
    for k, o in as_observed(t).items():
        dests = list(o.dests)
        rnd.shuffle(dests)  # type: ignore[attr-defined]
        shuffled[k] = ObservedService(o.service, tuple(dests))
    assert plan(t, shuffled, set(t)) == []


def test_the_kernels_newest_first_order_is_no_change_but_a_changed_weight_is() -> None:
    d2 = Destination(D2.key, weight=7)
    desired = desired_state([DesiredService(SVC, (D1, D2))])
    assert plan(desired, kernel(obs(SVC, D2, D1)), {KEY}) == []  # same objects, reversed
    assert plan(desired, kernel(obs(SVC, d2, D1)), {KEY}) == [EditDest(KEY, D2)]
    # equal copies (a decoded dump): compared field by field, still no op
    copies = kernel(obs(SVC, Destination(D2.key), Destination(D1.key)))
    assert plan(desired, copies, {KEY}) == []


def test_apply_after_the_service_was_replaced_uses_the_new_one() -> None:
    table = apply({}, [AddService(SVC), AddDest(KEY, D1)])
    for reset in ([DelService(KEY)], [Flush()]):
        ops = [AddDest(KEY, D2), *reset, AddService(SVC), AddDest(KEY, D1)]
        assert apply(table, ops) == kernel(obs(SVC, D1))
        assert apply(table, ops) == reference_apply(table, list(ops))
