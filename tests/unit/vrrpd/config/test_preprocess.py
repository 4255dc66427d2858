"""include, $NAME definitions, @id conditionals and ~SEQ/~LST, with positions."""

from __future__ import annotations

from pathlib import Path

from vrrpd.config.errors import Diagnostic, Position, Severity
from vrrpd.config.preprocess import Preprocessor


def run(text: str, *, config_id: str = "lb1", base: str = "/nonexistent",
        filename: str = "main.conf") -> tuple[Preprocessor, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    pre = Preprocessor(config_id, diags)
    pre.run_text(text, filename, base)
    return pre, diags


def words(pre: Preprocessor) -> list[list[str]]:
    return [[t.text for t in toks] for toks, _indent in pre.lines]


def test_lines_keep_positions_and_indentation() -> None:
    pre, diags = run("global_defs {\n    router_id  lb1   # comment\n}\n")
    assert words(pre) == [["global_defs", "{"], ["router_id", "lb1"], ["}"]]
    toks, indent = pre.lines[1]
    assert indent == 4
    assert [t.pos for t in toks] == [Position("main.conf", 2, 5), Position("main.conf", 2, 16)]
    assert diags == []


def test_blank_and_comment_lines_vanish() -> None:
    pre, _ = run("\n   \n# c\n! c\n  x 1 ! trailing\n")
    assert words(pre) == [["x", "1"]]
    assert pre.lines[0][0][0].pos == Position("main.conf", 5, 3)


def test_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "main.conf").write_text("include sub/a.conf\nlast 1\n")
    (tmp_path / "sub" / "a.conf").write_text("include b.conf\nfrom_a 1\n")
    (tmp_path / "sub" / "b.conf").write_text("  from_b 2\n")
    diags: list[Diagnostic] = []
    pre = Preprocessor("x", diags)
    pre.run_file(str(tmp_path / "main.conf"))
    assert words(pre) == [["from_b", "2"], ["from_a", "1"], ["last", "1"]]
    pos = pre.lines[0][0][0].pos
    assert (Path(pos.file).name, pos.line, pos.col) == ("b.conf", 1, 3)
    assert diags == []


def test_include_glob_is_sorted_and_braces_expand(tmp_path: Path) -> None:
    for name in ("b.conf", "a.conf", "c.txt", "d.conf"):
        (tmp_path / name).write_text(f"file {name}\n")
    pre, diags = run("include *.conf\ninclude {c.txt,nothere}\n", base=str(tmp_path))
    assert words(pre) == [["file", "a.conf"], ["file", "b.conf"], ["file", "d.conf"],
                          ["file", "c.txt"]]
    assert diags == []


def test_include_pattern_matching_nothing_is_silent(tmp_path: Path) -> None:
    pre, diags = run("include conf.d/*.conf\ninclude {a,b}.conf\nx 1\n", base=str(tmp_path))
    assert (words(pre), diags) == ([["x", "1"]], [])


def test_missing_include_is_only_a_warning(tmp_path: Path) -> None:
    pre, diags = run("x 1\ninclude   missing.conf\ny 2\n", base=str(tmp_path))
    assert words(pre) == [["x", "1"], ["y", "2"]]
    assert [(d.severity, d.pos) for d in diags] == [
        (Severity.WARNING, Position("main.conf", 2, 11))]


def test_include_loop_is_an_error_at_the_include(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("a 1\ninclude b.conf\n")
    (tmp_path / "b.conf").write_text("b 1\n  include a.conf\n")
    diags: list[Diagnostic] = []
    pre = Preprocessor("x", diags)
    pre.run_file(str(tmp_path / "a.conf"))
    assert words(pre) == [["a", "1"], ["b", "1"]]
    assert len(diags) == 1
    d = diags[0]
    assert d.severity == Severity.ERROR and "include loop" in d.message
    assert (Path(d.pos.file).name, d.pos.line, d.pos.col) == ("b.conf", 2, 3)


def test_unreadable_main_file_is_fatal(tmp_path: Path) -> None:
    diags: list[Diagnostic] = []
    Preprocessor("x", diags).run_file(str(tmp_path / "none.conf"))
    assert [d.severity for d in diags] == [Severity.FATAL]


def test_definition_and_both_reference_forms() -> None:
    pre, diags = run("$VIP=10.0.0.1\nvirtual_ipaddress $VIP ${VIP}/24\n")
    assert words(pre) == [["virtual_ipaddress", "10.0.0.1", "10.0.0.1/24"]]
    assert diags == []


def test_expanded_token_has_use_position_and_definition_in_via() -> None:
    pre, _ = run("$PRIO=150\n  priority   $PRIO\n")
    tok = pre.lines[0][0][1]
    assert tok.text == "150"
    assert (tok.pos.file, tok.pos.line, tok.pos.col) == ("main.conf", 2, 14)
    assert tok.pos.via == (Position("main.conf", 1, 7),)


def test_expansion_is_lazy_and_recursive() -> None:
    pre, _ = run("$A=x${B}z\n$B=1\nv $A\n$B=2\nv $A\n")
    assert words(pre) == [["v", "x1z"], ["v", "x2z"]]


def test_multi_line_definition_with_backslash() -> None:
    text = ("$RS=real_server 1.1.1.1 80 { \\\n  weight 2 \\\n}\n"
            "virtual_server 2.2.2.2 80 {\n$RS\n}\n")
    pre, diags = run(text)
    assert words(pre) == [["virtual_server", "2.2.2.2", "80", "{"],
                          ["real_server", "1.1.1.1", "80", "{"], ["weight", "2"], ["}"], ["}"]]
    weight = pre.lines[2][0][0]
    assert (weight.pos.line, weight.pos.via[-1].line, weight.pos.via[-1].col) == (5, 2, 3)
    assert diags == []


def test_undefined_reference_is_left_as_written_with_a_warning() -> None:
    pre, diags = run("priority $NOPE\n")
    assert words(pre) == [["priority", "$NOPE"]]
    assert [(d.severity, d.pos) for d in diags] == [
        (Severity.WARNING, Position("main.conf", 1, 10))]


def test_self_reference_terminates_with_an_error() -> None:
    pre, diags = run("$A=$B\n$B=$A\nrouter_id $A\n")
    assert words(pre) == []
    assert [d.severity for d in diags] == [Severity.ERROR]
    assert diags[0].pos.line == 3


def test_exponential_expansion_is_cut_off() -> None:
    text = "".join(f"$D{i}=$D{i + 1} $D{i + 1}\n" for i in range(40)) + "$D40=x\nrouter_id $D0\n"
    pre, diags = run(text)
    assert words(pre) == []
    assert [(d.severity, d.pos.line) for d in diags] == [(Severity.ERROR, 42)]
    assert "too large" in diags[0].message


def test_config_id_conditionals() -> None:
    text = "@lb1 priority 150\n@lb2 priority 100\n@^lb1 state BACKUP\n@^lb2 state MASTER\n"
    pre, _ = run(text, config_id="lb1")
    assert words(pre) == [["priority", "150"], ["state", "MASTER"]]
    assert pre.lines[0][0][0].pos == Position("main.conf", 1, 6)


def test_conditional_definition() -> None:
    pre, _ = run("@lb1 $P=150\n@^lb1 $P=100\npriority $P\n", config_id="lb2")
    assert words(pre) == [["priority", "100"]]


def test_seq_forms() -> None:
    cases = {
        "~SEQ(n,3)": ["1", "2", "3"],
        "~SEQ(n,0)": ["1", "0"],
        "~SEQ(n,-2)": ["-1", "-2"],
        "~SEQ(n,5,7)": ["5", "6", "7"],
        "~SEQ(n,5,3)": ["5", "4", "3"],
        "~SEQ(n,2,3,9)": ["2", "5", "8"],
        "~SEQ(n,7,-1,5)": ["7", "6", "5"],
        "~SEQx(n,9,1,11)": ["9", "a", "b"],
    }
    for spec, expected in cases.items():
        pre, diags = run(f"{spec} w ${{n}}\n")
        assert [w[1] for w in words(pre)] == expected, spec
        assert diags == []


def test_seq_line_positions_point_at_the_generator_line() -> None:
    pre, _ = run("\n  ~SEQ(i,1,2) real_server 10.0.0.${i} 80\n")
    toks = pre.lines[1][0]
    assert [t.text for t in toks] == ["real_server", "10.0.0.2", "80"]
    assert toks[0].pos == Position("main.conf", 2, 15)
    assert toks[1].pos.line == 2


def test_seq_variable_is_restored_afterwards() -> None:
    pre, _ = run("$n=keep\n~SEQ(n,2) a $n\nb $n\n")
    assert words(pre) == [["a", "1"], ["a", "2"], ["b", "keep"]]


def test_lst_simple_and_grouped() -> None:
    pre, diags = run("~LST(n,4,a,6) w $n\n~LST({x,y},{1,2},{3,4}) v ${x}${y}\n")
    assert words(pre) == [["w", "4"], ["w", "a"], ["w", "6"], ["v", "12"], ["v", "34"]]
    assert diags == []


def test_bad_generators_are_errors_and_the_line_is_dropped() -> None:
    for spec in ("~SEQ(n,1,0,3)", "~SEQ(n,x)", "~SEQ(n,1", "~LST({a,b},{1})"):
        pre, diags = run(f"{spec} w $n\n")
        assert words(pre) == [], spec
        assert [(d.severity, d.pos.line) for d in diags] == [(Severity.ERROR, 1)], spec


def test_predefined_hash_and_bang() -> None:
    pre, _ = run("x ${_HASH}1 ${_BANG}2\n")
    assert words(pre) == [["x", "#1", "!2"]]
