"""Property tests: on any input the config reader terminates and raises nothing but
the project's config error types (it reports problems as diagnostics instead)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrrpd.config.errors import ConfigError, Diagnostic, Severity
from vrrpd.config.loader import load_text
from vrrpd.config.nodes import Node
from vrrpd.config.syntax import read_tree_text

ETC = Path(__file__).resolve().parents[4] / "etc"
# An empty directory: relative includes in generated text find nothing.
EMPTY_DIR = os.path.join(os.path.dirname(__file__), "__no_such_dir__")

VALID = """! Configuration File for keepalived
$VIP=10.0.0.100
global_defs {
    router_id lb1   # comment
}
vrrp_script chk { script "/usr/bin/killall -0 haproxy" root
    interval 2
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
@lb1 nopreempt
    virtual_ipaddress { ${VIP}/24 dev eth0 }
    track_script {
        chk weight -2
    }
    notify_master "/bin/echo 'x y'"
}
virtual_server ${VIP} 80 {
    lb_algo wrr
    lb_kind DR
    protocol TCP
~SEQ(n,1,3) real_server 10.0.1.$n 80 { weight $n TCP_CHECK { connect_timeout 3 } }
    real_server 10.0.2.1 80 {
        HTTP_GET { url { path / status_code 200 } }
    }
}
"""

# Characters and fragments that exercise every lexical rule.
SPECIAL = st.sampled_from([
    "{", "}", '"', "'", "#", "!", "$", "${", "}", "@", "@^", "~SEQ(", "~LST(", "~SEQx(", ")",
    ",", "\\", "\n", "\t", " ", "=", "$A=", "$A", "include ", "include x*", "_RANDOM",
    "vrrp_instance", "virtual_server", "real_server", "TCP_CHECK", "state", "MASTER",
    "10.0.0.1", "80", "-1", "999999", "\x00", "é",
])
TEXT = st.lists(st.one_of(SPECIAL, st.text(max_size=6)), max_size=60).map("".join)

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def syntax_only(text: str) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    try:
        read_tree_text(text, filename="p.conf", config_id="lb1", diagnostics=diags,
                       base_dir=EMPTY_DIR)
    except ConfigError as exc:  # the only exception allowed
        diags.extend(exc.diagnostics)
    return diags


def full_load(text: str) -> list[Diagnostic]:
    try:
        return list(load_text(text, config_id="lb1", filename="p.conf",
                              base_dir=EMPTY_DIR).diagnostics)
    except ConfigError as exc:
        return list(exc.diagnostics)


def assert_well_formed(diags: list[Diagnostic]) -> None:
    for d in diags:
        assert isinstance(d.severity, Severity)
        assert d.message
        assert d.pos.line >= 0 and d.pos.col >= 0


@SETTINGS
@given(TEXT)
def test_syntax_layer_on_arbitrary_text(text: str) -> None:
    assert_well_formed(syntax_only(text))


@SETTINGS
@given(st.text(max_size=300))
def test_syntax_layer_on_arbitrary_unicode(text: str) -> None:
    assert_well_formed(syntax_only(text))


@SETTINGS
@given(TEXT)
def test_full_load_on_arbitrary_text(text: str) -> None:
    assert_well_formed(full_load(text))


MUTATION = st.tuples(st.sampled_from(["insert", "delete", "replace", "dup_line", "drop_line"]),
                     st.floats(0, 1), st.integers(1, 12), st.one_of(SPECIAL, st.text(max_size=4)))


def mutate(text: str, ops: list[tuple[str, float, int, str]]) -> str:
    for op, where, size, payload in ops:
        i = int(where * len(text))
        if op == "insert":
            text = text[:i] + payload + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + size:]
        elif op == "replace":
            text = text[:i] + payload + text[i + len(payload):]
        else:
            lines = text.split("\n")
            k = min(int(where * len(lines)), len(lines) - 1)
            if op == "dup_line":
                lines.insert(k, lines[k])
            else:
                del lines[k]
            text = "\n".join(lines)
    return text


SOURCES = [VALID] + [p.read_text() for p in sorted(ETC.glob("*.conf"))]


@SETTINGS
@given(st.sampled_from(SOURCES), st.lists(MUTATION, min_size=1, max_size=8))
def test_mutated_valid_configs(source: str, ops: list[tuple[str, float, int, str]]) -> None:
    text = mutate(source, ops)
    assert_well_formed(syntax_only(text))
    assert_well_formed(full_load(text))


def test_the_unmutated_source_is_clean() -> None:
    diags = full_load(VALID)
    assert [d for d in diags if d.severity >= Severity.ERROR] == []


PLAIN_PIECES = st.sampled_from(["{", "}", '"', " ", "\t", "\n", "#", "!", "x", "10.0.0.1",
                                "real_server", "'"])
PLAIN = st.lists(st.one_of(PLAIN_PIECES, st.text(alphabet="abc{} \n\"'", max_size=5)),
                 max_size=40).map("".join)


@SETTINGS
@given(PLAIN)
def test_every_token_sits_where_its_position_says(text: str) -> None:
    """Without $/@/~ (no expansion) each token is found verbatim at its file:line:col."""
    diags: list[Diagnostic] = []
    nodes = read_tree_text(text, filename="p.conf", config_id="lb1", diagnostics=diags,
                           base_dir=EMPTY_DIR)
    lines = text.split("\n")

    def check(node_list: tuple[Node, ...] | None) -> None:
        for node in node_list or ():
            for tok in (node.keyword, *node.args):
                line = lines[tok.pos.line - 1]
                at = line[tok.pos.col - 1:]
                assert at.startswith(f'"{tok.text}"' if tok.quoted else tok.text), (tok, line)
            if node.end is not None:
                assert lines[node.end.line - 1][node.end.col - 1] == "}"
            check(node.children)

    check(nodes)
    for d in diags:
        assert 1 <= d.pos.line <= len(lines)
