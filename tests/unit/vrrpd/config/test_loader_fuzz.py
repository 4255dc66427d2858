"""Property: the loader never raises on any block tree; every problem is a Diagnostic.

Configs are generated from the real keyword tables with arbitrary arguments, so
every handler sees missing, extra and malformed values.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrrpd.config.blocks_checkers import CHECKER_BLOCKS
from vrrpd.config.blocks_global import GLOBAL_DEFS
from vrrpd.config.blocks_lvs import REAL_SERVER, VIRTUAL_SERVER
from vrrpd.config.blocks_tracking import SYNC_GROUP, TRACK_FILE, VRRP_SCRIPT
from vrrpd.config.blocks_vrrp import INSTANCE
from vrrpd.config.errors import Diagnostic
from vrrpd.config.loader import TOP_LEVEL, load_text
from vrrpd.config.model import Config

WORDS = st.sampled_from([
    "0", "1", "-1", "255", "256", "65536", "3.5", "abc", "10.0.0.1", "10.0.0.1/24", "10.0.0.300",
    "2001:db8::1", "fe80::1/64", "eth0", "MASTER", "BACKUP", "TCP", "udp", "rr", "DR", "TUN",
    "type", "gue", "port", "weight", "reverse", "dev", "brd", "scope", "label", "via", "src",
    "fwmark", "group", "inet", "on", "off", '"/bin/true arg"', "'x y'", "200-299", "Ab 1x",
    "VI_1", "chk", "tf", "G1", "10.0.0.1-5",
    # non-ASCII digits and NULs: str.isdigit()/int()/inet_pton disagree on these
    "\u00b2", "\u0661\u0662", "10.0.0.1/\u00b2", "1.2.3\x00.4", "::1\x00", "1e5", "nan", "inf",
])


def line(keywords: list[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda k, a: " ".join([k, *a]), st.sampled_from(keywords),
                     st.lists(WORDS, max_size=4))


def block(keywords: list[str], inner: st.SearchStrategy[str] | None = None,
              ) -> st.SearchStrategy[str]:
    item = line(keywords) if inner is None else st.one_of(line(keywords), inner)
    return st.builds(lambda head, body: head + " {\n" + "\n".join(body) + "\n}",
                     line(keywords), st.lists(item, max_size=6))


CHECKER = st.builds(lambda name, body: name + " {\n" + "\n".join(body) + "\n}",
                    st.sampled_from(sorted(CHECKER_BLOCKS)),
                    st.lists(line([*sorted({k for b, _ in CHECKER_BLOCKS.values()
                                            for k in b.keywords}), "url"]), max_size=5))
REAL = st.builds(lambda a, body: f"real_server {a} {{\n" + "\n".join(body) + "\n}",
                 st.lists(WORDS, max_size=2).map(" ".join),
                 st.lists(st.one_of(line(sorted(REAL_SERVER.keywords)), CHECKER), max_size=4))
VS = st.builds(lambda a, body: f"virtual_server {a} {{\n" + "\n".join(body) + "\n}",
               st.lists(WORDS, max_size=3).map(" ".join),
               st.lists(st.one_of(line(sorted(VIRTUAL_SERVER.keywords)), REAL), max_size=6))
INST = st.builds(lambda body: "vrrp_instance VI_1 {\n" + "\n".join(body) + "\n}",
                 st.lists(st.one_of(line(sorted(INSTANCE.keywords)),
                                    block(["virtual_ipaddress", "track_script", "unicast_peer",
                                           "virtual_routes", "authentication"],
                                          line(["10.0.0.1", "chk", "auth_type", "auth_pass",
                                                "2001:db8::1", "default"]))), max_size=8))
TOP = st.one_of(
    INST, VS,
    st.builds(lambda b: "global_defs {\n" + "\n".join(b) + "\n}",
              st.lists(line(sorted(GLOBAL_DEFS.keywords)), max_size=6)),
    st.builds(lambda b: "vrrp_script chk {\n" + "\n".join(b) + "\n}",
              st.lists(line(sorted(VRRP_SCRIPT.keywords)), max_size=5)),
    st.builds(lambda b: "track_file tf {\n" + "\n".join(b) + "\n}",
              st.lists(line(sorted(TRACK_FILE.keywords)), max_size=4)),
    st.builds(lambda b: "vrrp_sync_group G1 {\ngroup {\nVI_1\n}\n" + "\n".join(b) + "\n}",
              st.lists(line(sorted(SYNC_GROUP.keywords)), max_size=4)),
    line(list(TOP_LEVEL)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TOP, max_size=5))
def test_loader_never_raises(blocks: list[str]) -> None:
    config, diagnostics = load_text("\n".join(blocks) + "\n", filename="fuzz.conf")
    assert isinstance(config, Config)
    assert all(isinstance(d, Diagnostic) for d in diagnostics)
