"""Block structure: braces anywhere, one keyword per line, and the block-level diagnostics."""

from __future__ import annotations

from vrrpd.config.errors import Diagnostic, Position, Severity
from vrrpd.config.nodes import Node, Token
from vrrpd.config.syntax import read_tree_text, split_command


def tree(text: str) -> tuple[tuple[Node, ...], list[Diagnostic]]:
    diags: list[Diagnostic] = []
    nodes = read_tree_text(text, filename="t.conf", diagnostics=diags, base_dir="/nonexistent")
    return nodes, diags


def shape(nodes: tuple[Node, ...] | None) -> list[object]:
    """Nested [keyword, args..., [children]] for compact assertions."""
    out: list[object] = []
    for n in nodes or ():
        item: list[object] = [n.name, *(a.text for a in n.args)]
        if n.children is not None:
            item.append(shape(n.children))
        out.append(item)
    return out


def test_nested_blocks_and_leaf_positions() -> None:
    nodes, diags = tree("vrrp_instance VI_1 {\n  state MASTER\n  authentication {\n"
                        "    auth_type PASS\n  }\n}\n")
    assert shape(nodes) == [["vrrp_instance", "VI_1", [
        ["state", "MASTER"], ["authentication", [["auth_type", "PASS"]]]]]]
    inst = nodes[0]
    assert inst.pos == Position("t.conf", 1, 1)
    assert inst.end == Position("t.conf", 6, 1)
    assert inst.children is not None
    auth = inst.children[1]
    assert auth.pos == Position("t.conf", 3, 3) and auth.end == Position("t.conf", 5, 3)
    assert diags == []


def test_everything_on_one_line() -> None:
    nodes, diags = tree("real_server 1.2.3.4 80 { TCP_CHECK { connect_timeout 3 } weight 2 }")
    assert shape(nodes) == [["real_server", "1.2.3.4", "80", [
        ["TCP_CHECK", [["connect_timeout", "3"]]], ["weight", "2"]]]]
    assert nodes[0].children is not None
    assert nodes[0].children[1].pos == Position("t.conf", 1, 58)
    assert diags == []


def test_brace_alone_on_next_line_opens_the_keyword_before() -> None:
    nodes, diags = tree("virtual_ipaddress\n{\n  10.0.0.1\n}\n")
    assert shape(nodes) == [["virtual_ipaddress", [["10.0.0.1"]]]]
    assert nodes[0].pos == Position("t.conf", 1, 1)
    assert diags == []


def test_text_after_a_brace_is_the_next_line() -> None:
    nodes, _ = tree("track_interface { eth1 weight 3 } priority 50\n")
    assert shape(nodes) == [["track_interface", [["eth1", "weight", "3"]]], ["priority", "50"]]


def test_closing_brace_glued_to_a_word() -> None:
    nodes, _ = tree("track_interface {eth1\neth2}")
    assert shape(nodes) == [["track_interface", [["eth1"], ["eth2"]]]]


def test_empty_block_is_an_empty_tuple_and_leaf_has_none() -> None:
    nodes, _ = tree("a { }\nb\n")
    assert nodes[0].children == () and nodes[1].children is None


def test_quoted_brace_is_an_argument() -> None:
    nodes, diags = tree('script "/bin/x {"\n')
    assert shape(nodes) == [["script", "/bin/x {"]]
    assert nodes[0].args[0].quoted
    assert diags == []


def test_unclosed_block_at_end_of_file() -> None:
    _, diags = tree("vrrp_instance VI_1 {\n  state MASTER\n")
    assert len(diags) == 1
    d = diags[0]
    assert d.severity == Severity.ERROR  # keepalived 2.2.7 runs it: -t exits 5
    assert d.pos == Position("t.conf", 1, 20)
    assert "'vrrp_instance'" in d.message and "t.conf:1:1" in d.message
    assert d.hint is not None and "end of the file" in d.hint


def test_unclosed_block_hint_uses_the_mismatched_closing_brace() -> None:
    text = ("vrrp_instance VI_1 {\n"        # 1
            "    virtual_ipaddress {\n"     # 2
            "        10.0.0.1\n"            # 3
            "    track_script {\n"          # 4  <- the '}' is missing before this line
            "        chk\n"                 # 5
            "    }\n"                       # 6
            "}\n")                          # 7
    nodes, diags = tree(text)
    assert len(diags) == 1
    d = diags[0]
    assert d.severity == Severity.ERROR
    assert "'vrrp_instance'" in d.message
    assert d.hint is not None
    assert "t.conf:7:1" in d.hint                      # the '}' that closed the wrong block
    assert "'virtual_ipaddress' opened at t.conf:2:5" in d.hint
    assert "before line 4 ('track_script')" in d.hint
    # the contents are still handed on
    assert shape(nodes)[0] == ["vrrp_instance", "VI_1", [
        ["virtual_ipaddress", [["10.0.0.1"], ["track_script", [["chk"]]]]]]]


def test_unclosed_block_hint_by_indentation_without_mismatch() -> None:
    text = "global_defs {\n  router_id a\nvrrp_instance VI_1 {\n  state MASTER\n}\n"
    _, diags = tree(text)
    assert len(diags) == 1
    assert diags[0].hint is not None and "line 3 ('vrrp_instance')" in diags[0].hint


def test_extra_open_brace_after_a_leaf_is_reported_where_it_is() -> None:
    text = "vrrp_instance VI_1 {\n    state MASTER\n    priority 100 {\n}\n"
    _, diags = tree(text)
    assert len(diags) == 1
    d = diags[0]
    assert d.severity == Severity.ERROR and d.pos == Position("t.conf", 3, 18)
    assert "'priority' looks extra" in d.message and "t.conf:4:1" in d.message
    assert d.hint is not None and "'vrrp_instance' opened at t.conf:1:1" in d.hint


def test_every_open_block_is_reported() -> None:
    _, diags = tree("a {\n  b {\n    c 1\n")
    assert [(d.severity, d.pos.line) for d in diags] == [(Severity.ERROR, 1), (Severity.ERROR, 2)]


def test_stray_closing_brace() -> None:
    nodes, diags = tree("a {\n  x 1\n}\n}\nb 2\n")
    assert shape(nodes) == [["a", [["x", "1"]]], ["b", "2"]]
    assert len(diags) == 1
    d = diags[0]
    assert d.severity == Severity.ERROR and d.pos == Position("t.conf", 4, 1)
    assert d.hint is not None and "'a' opened at t.conf:1:1" in d.hint


def test_open_brace_without_keyword() -> None:
    nodes, diags = tree("a {\n}\n{\n  x 1\n}\nb 2\n")
    assert shape(nodes) == [["a", []], ["b", "2"]]
    assert [(d.severity, d.pos) for d in diags] == [(Severity.ERROR, Position("t.conf", 3, 1))]


def test_positions_survive_includes_and_definitions(tmp_path: object) -> None:
    nodes, _ = tree("$IF=eth0\nvrrp_instance V {\n  interface $IF\n}\n")
    assert nodes[0].children is not None
    arg = nodes[0].children[0].args[0]
    assert arg.text == "eth0"
    assert (arg.pos.line, arg.pos.col) == (3, 13)
    assert arg.pos.via == (Position("t.conf", 1, 5),)


def tok(text: str, quoted: bool = True) -> Token:
    return Token(text, Position("t.conf", 1, 1), quoted)


def test_split_command_plain_and_quoted() -> None:
    assert split_command(tok("/bin/check a  b"), []) == (("/bin/check", "a", "b"), None, None)
    assert split_command(tok("/bin/check 'a b' \"c d\" e"), []) == (
        ("/bin/check", "a b", "c d", "e"), None, None)
    assert split_command(tok("/bin/x ''"), []) == (("/bin/x", ""), None, None)


def test_split_command_user_and_group() -> None:
    assert split_command(tok("/bin/x"), [tok("nobody", False)]) == (("/bin/x",), "nobody", None)
    assert split_command(tok("/bin/x"), [tok("nobody", False), tok("nogroup", False)]) == (
        ("/bin/x",), "nobody", "nogroup")
