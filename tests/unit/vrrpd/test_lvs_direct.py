"""The cold start's direct reader (vrrpd.lvs_direct): whatever it accepts, it must send the very
requests the full reader's desired state gives (vrrpd.lvs_cache.build_requests over
compile_config), on the example configs, on hand-written edge cases and on generated configs;
what it is not sure of, it refuses with a reason."""

from __future__ import annotations

import ipaddress
import pathlib
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrrpd import lvs_direct
from vrrpd.config.blocks_checkers import CHECKER_BLOCKS
from vrrpd.config.blocks_lvs import REAL_SERVER, VIRTUAL_SERVER
from vrrpd.config.loader import load_text
from vrrpd.config.model_lvs import Protocol, Scheduler
from vrrpd.lvs_cache import build_requests
from vrrpd.lvs_desired import compile_config, desired

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "bench"))

from ipvs_program import make_config  # noqa: E402  (the benchmark's config)


def full(text: str) -> tuple[bytes, list[bytes], int]:
    config = load_text(text).config
    want = desired(compile_config(config), {})
    cmds, payloads = build_requests(want)
    return cmds, payloads, len(want)


def check(text: str) -> tuple[bytes, list[bytes], int] | str:
    """The direct reader's answer, asserted equal to the full reader's when it has one."""
    got = lvs_direct.requests_of_text(text)
    if not isinstance(got, str):
        assert got == full(text)
    return got


def accepted(text: str) -> tuple[bytes, list[bytes], int]:
    got = check(text)
    assert not isinstance(got, str), got
    return got


# ---------------------------------------------------------------- keyword tables


def test_every_keyword_of_the_full_reader_is_classified() -> None:
    """A keyword the parser learns must be decided here too (handled, neutral or refused):
    otherwise it would silently fall to 'unknown keyword' and never be looked at."""
    vs_handled = {"lb_algo", "lvs_sched", "protocol", "lb_kind", "lvs_method",
                  "persistence_timeout", "real_server"}
    vs_refused = {"persistence_granularity", "persistence_engine", "ip_family", "sorry_server",
                  "sorry_server_inhibit", "sorry_server_lvs_method", "ops", "flag-1", "flag-2",
                  "flag-3", "sh-fallback", "mh-fallback", "sh-port", "mh-port", "alpha"}
    assert set(VIRTUAL_SERVER.keywords) == vs_handled | vs_refused | lvs_direct.VS_NEUTRAL
    rs_handled = {"weight", "uthreshold", "lthreshold", "lvs_method", "lb_kind"}
    assert set(REAL_SERVER.keywords) == (rs_handled | {"alpha"} | lvs_direct.RS_NEUTRAL
                                         | lvs_direct.CHECKERS)
    assert set(CHECKER_BLOCKS) == lvs_direct.CHECKERS
    assert {s.value for s in Scheduler} == lvs_direct.SCHEDULERS
    assert set(lvs_direct.PROTOCOLS) == {p.value.lower() for p in Protocol}


# ---------------------------------------------------------------- configs of the repository


def test_the_benchmark_config_is_read_directly() -> None:
    cmds, payloads, services = accepted(make_config(50, 10))
    assert services == 50 and len(payloads) == 550
    assert cmds.count(1) == 50 and cmds.count(5) == 500


@pytest.mark.parametrize("path", sorted((REPO / "etc").glob("*.conf")), ids=lambda p: p.name)
def test_example_configs_agree_with_the_full_reader(path: pathlib.Path) -> None:
    got = check(path.read_text())
    if path.name.startswith(("seed000", "seed002", "seed003")):  # plain LVS-DR seeds
        assert not isinstance(got, str), got


# ---------------------------------------------------------------- forms


BASE = """\
global_defs {
    router_id x   # comment { with a brace
    notification_email { ops@example.com }
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    notify_master "/bin/echo '{' #x"
    virtual_ipaddress {
        10.0.0.100
    }
}
"""


@pytest.mark.parametrize("vs", [
    # brace alone on the next line, glued braces, one-line blocks
    "virtual_server 10.0.0.100 80\n{\n protocol TCP\n lb_algo rr\n lb_kind DR\n"
    " real_server 10.0.0.5 80\n {\n  weight 2\n }\n}\n",
    "virtual_server 10.0.0.100 80{\nprotocol TCP\nreal_server 10.0.0.5 80 { weight 2 }}\n",
    # defaults: no protocol (UDP), no scheduler (wlc), no method (NAT), no weight (1)
    "virtual_server 10.0.0.100 53 {\n real_server 10.0.0.5 53 {\n }\n}\n",
    # real server port from the virtual server's; method inherited wherever it stands
    "virtual_server 10.0.0.100 80 {\n real_server 10.0.0.5 { weight 1 }\n lb_kind DR\n}\n",
    # own method, thresholds, persistence with and without a value, case of protocol
    "virtual_server 10.0.0.100 80 {\n protocol tcp\n lb_kind DR\n persistence_timeout\n"
    " real_server 10.0.0.5 8080 {\n lb_kind NAT\n uthreshold 100\n lthreshold 10\n"
    " weight +7\n }\n}\n",
    "virtual_server 10.0.0.100 80 {\n persistence_timeout 0600\n protocol SCTP\n"
    " real_server 10.0.0.5 80 { weight 0 }\n}\n",
    # checkers without alpha and neutral keywords (quoted scripts, comments)
    "virtual_server 10.0.0.100 80 {\n delay_loop 3\n quorum 2\n hysteresis 1\n"
    " quorum_up \"/bin/true 'a b'\" # note\n protocol TCP\n lb_algo wrr\n"
    " real_server 10.0.0.5 80 {\n weight 3\n inhibit_on_failure\n"
    "  notify_down \"/bin/echo down\"\n  TCP_CHECK {\n   connect_timeout 3\n  }\n"
    "  HTTP_GET {\n   url {\n    path /\n    status_code 200\n   }\n  }\n }\n}\n",
    # IPv6
    "virtual_server fd00::100 443 {\n protocol TCP\n lb_kind DR\n"
    " real_server fd00::5 443 { weight 1 }\n real_server fd00::6 443 { weight 1 }\n}\n",
])
def test_accepted_forms_agree(vs: str) -> None:
    accepted(BASE + vs)


@pytest.mark.parametrize(("text", "reason"), [
    ("include /etc/keepalived/other.conf\n", "include"),
    ("$VIP=10.0.0.1\n", "preprocessor"),
    ("  @node1 virtual_server 10.0.0.1 80 {\n}\n", "preprocessor"),
    ("~SEQ(i,1,2) x\n", "preprocessor"),
    ('router_id "unterminated\n', "unterminated_quote"),
    ("virtual_server 10.0.0.1 80 {\n", "unclosed_block"),
    ("}\n", "brace"),
    ("global_defs {\n lvs_flush\n}\n", "lvs_flush"),
    ("virtual_server_group G {\n 10.0.0.1 80\n}\n", "virtual_server_group"),
    ("virtual_server fwmark 1 {\n real_server 10.0.0.5 80 { }\n}\n", "value:address"),
    ("virtual_server 10.0.0.1 {\n real_server 10.0.0.5 80 { }\n}\n", "form:virtual_server"),
    ("virtual_server 10.0.0.1 0 {\n real_server 10.0.0.5 80 { }\n}\n", "value:port"),
    ("virtual_server 10.0.0.1 80 {\n lb_kind TUN\n real_server 10.0.0.5 80 { }\n}\n",
     "value:lvs_method"),
    ("virtual_server 10.0.0.1 80 {\n sorry_server 10.0.0.9 80\n"
     " real_server 10.0.0.5 80 { }\n}\n", "keyword:virtual_server sorry_server"),
    ("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.5 80 {\n TCP_CHECK {\n alpha\n }\n"
     " }\n}\n", "alpha"),
    ("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.5 80 { weight 1 2 }\n}\n",
     "form:weight"),
    ("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.5 80 { weight x }\n}\n",
     "value:weight"),
    ("virtual_server 10.0.0.1 80 {\n real_server fd00::5 80 { }\n}\n", "real_server_family"),
    ("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.5 80 { }\n"
     " real_server 10.0.0.5 80 { }\n}\n", "duplicate_real_server"),
    ("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.5 80 { }\n}\n"
     "virtual_server 10.0.0.1 80 {\n lb_algo rr\n real_server 10.0.0.6 80 { }\n}\n",
     "duplicate_virtual_server"),
    ("virtual_server 10.0.0.1 80 {\n lb_algo rr\n}\n", "no_real_servers"),
    ("virtual_server 10.0.0.1 80 {\n lb_algo fastest\n real_server 10.0.0.5 80 { }\n}\n",
     "value:scheduler"),
    ("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.5 80 { wieght 1 }\n}\n",
     "keyword:real_server wieght"),
    ("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.5 80 { weight 1 }\n}\n"
     "virtual_server 10.0.0.2 80 {\n protocol TCP\u3000\n real_server 10.0.0.5 80 { }\n}\n",
     "not_ascii"),
    ("vrrp_instance VI_1 {\n state MASTER\n}\n", "no_virtual_servers"),
])
def test_refused_with_a_reason(text: str, reason: str) -> None:
    assert check(text) == reason


def test_non_ascii_comments_are_fine() -> None:
    accepted("! 配置\nvirtual_server 10.0.0.1 80 { # 虚拟服务\n protocol TCP\n"
             " real_server 10.0.0.5 80 { weight 1 } # 真实服务器\n}\n")


def test_reads_a_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "k.conf"
    path.write_text(make_config(2, 2))
    assert lvs_direct.requests_of(str(path)) == full(make_config(2, 2))
    assert lvs_direct.requests_of(str(tmp_path / "missing.conf")).startswith("unreadable")


# ---------------------------------------------------------------- generated configs


ADDR4 = st.integers(0x0A000001, 0x0A0000FE).map(lambda n: str(ipaddress.IPv4Address(n)))
ADDR6 = st.integers(1, 0xFFFF).map(lambda n: str(ipaddress.IPv6Address(0xFD00 << 112 | n)))
INT_TEXT = st.one_of(st.integers(0, 70000).map(str), st.sampled_from(["+3", "-0", "007", "x",
                                                                      "2147483648", ""]))
NEUTRAL = st.sampled_from(["delay_loop 3", "retry 2", "smtp_alert", "inhibit_on_failure",
                           "connect_timeout 5", "virtualhost www", "# comment",
                           "! comment", 'notify_up "/bin/true x"'])


@st.composite
def real_server(draw: st.DrawFn, family: st.SearchStrategy[str]) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(st.one_of(
            NEUTRAL,
            INT_TEXT.map(lambda v: f"weight {v}"),
            st.integers(0, 100).map(lambda v: f"uthreshold {v}"),
            st.integers(0, 100).map(lambda v: f"lthreshold {v}"),
            st.sampled_from(["lb_kind DR", "lvs_method NAT", "lb_kind TUN", "alpha",
                             "TCP_CHECK {\n connect_timeout 1\n }",
                             "MISC_CHECK {\n misc_path /bin/true\n alpha\n }"]))))
    port = draw(st.sampled_from(["", " 80", " 8080", " 0"]))
    sep = draw(st.sampled_from([" {\n", "\n{\n", "{\n"]))
    return f"real_server {draw(family)}{port}{sep}" + "\n".join(lines) + "\n}"


@st.composite
def virtual_server(draw: st.DrawFn) -> str:
    family = draw(st.sampled_from([ADDR4, ADDR6]))
    lines = [draw(real_server(draw(st.sampled_from([family, family, ADDR4, ADDR6]))))
             for _ in range(draw(st.integers(0, 4)))]
    for _ in range(draw(st.integers(0, 4))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.one_of(
            NEUTRAL,
            st.sampled_from(["rr", "wrr", "wlc", "sh", "RR", "bogus"]).map(
                lambda v: f"lb_algo {v}"),
            st.sampled_from(["TCP", "udp", "Sctp", "icmp"]).map(lambda v: f"protocol {v}"),
            st.sampled_from(["DR", "NAT", "TUN"]).map(lambda v: f"lvs_method {v}"),
            st.sampled_from(["", " 60", " 0", " 99999999"]).map(
                lambda v: f"persistence_timeout{v}"),
            st.sampled_from(["ops", "sh-port", "quorum 2", "ha_suspend", "sorry_server "
                             "10.0.0.250 80", "persistence_granularity 24"]))))
    port = draw(st.sampled_from([" 80", " 443", "", " 0"]))
    return f"virtual_server {draw(family)}{port} {{\n" + "\n".join(lines) + "\n}\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(virtual_server(), min_size=1, max_size=4), st.booleans())
def test_generated_configs_agree_or_are_refused(blocks: list[str], with_vrrp: bool) -> None:
    check((BASE if with_vrrp else "") + "".join(blocks))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(ADDR4, st.integers(1, 65535), st.lists(
    st.tuples(ADDR4, st.integers(0, 65535), st.integers(0, 1000)), min_size=1, max_size=5,
    unique_by=lambda t: (t[0], t[1]))), min_size=1, max_size=5, unique_by=lambda t: (t[0], t[1])))
def test_plain_generated_configs_are_accepted(services: list[tuple[str, int, list[tuple[
        str, int, int]]]]) -> None:
    """A plain config (the subset the reader exists for) is never refused."""
    text = "".join(
        f"virtual_server {vip} {port} {{\n  protocol TCP\n  lb_algo wrr\n  lb_kind DR\n"
        + "".join(f"  real_server {a} {p} {{\n    weight {w}\n  }}\n" for a, p, w in rss)
        + "}\n" for vip, port, rss in services)
    accepted(text)
