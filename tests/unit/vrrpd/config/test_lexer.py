"""Line lexer: comments, quotes, words, braces, and the position of every token."""

from __future__ import annotations

from vrrpd.config.errors import Diagnostic, Position, Severity
from vrrpd.config.lexer import SrcText, concat, indent_of, strip_comment, tokenize


def lex(text: str, *, col: int = 1) -> tuple[list[tuple[str, int, bool]], list[Diagnostic]]:
    diags: list[Diagnostic] = []
    toks = tokenize(SrcText(text, "f.conf", 7, col), diags)
    return [(t.text, t.pos.col, t.quoted) for t in toks], diags


def test_hash_and_bang_start_a_comment_anywhere() -> None:
    assert strip_comment("priority 100 # the master") == "priority 100 "
    assert strip_comment("priority 100! note") == "priority 100"
    assert strip_comment("auth_pass ab#cd") == "auth_pass ab"
    assert strip_comment("! whole line") == ""


def test_comment_characters_inside_double_quotes_are_kept() -> None:
    assert strip_comment('script "/bin/echo #1 !2" # c') == 'script "/bin/echo #1 !2" '


def test_single_quote_does_not_protect_a_comment() -> None:
    # keepalived 2.2.7: 10.0.0.5'#x' is the word 10.0.0.5' followed by a comment.
    assert strip_comment("10.0.0.5'#x'") == "10.0.0.5'"


def test_words_carry_file_line_and_column() -> None:
    diags: list[Diagnostic] = []
    toks = tokenize(SrcText("state   MASTER", "f.conf", 7, 5), diags)
    assert [(t.text, t.pos) for t in toks] == [
        ("state", Position("f.conf", 7, 5)), ("MASTER", Position("f.conf", 7, 13))]
    assert diags == []


def test_braces_are_tokens_glued_or_not() -> None:
    toks, _ = lex("real_server 1.2.3.4 80 {TCP_CHECK{ connect_timeout 3}}")
    assert toks == [("real_server", 1, False), ("1.2.3.4", 13, False), ("80", 21, False),
                    ("{", 24, False), ("TCP_CHECK", 25, False), ("{", 34, False),
                    ("connect_timeout", 36, False), ("3", 52, False), ("}", 53, False),
                    ("}", 54, False)]


def test_double_quotes_group_words_and_keep_the_opening_quote_column() -> None:
    toks, diags = lex('script "/bin/check a b" root')
    assert toks == [("script", 1, False), ("/bin/check a b", 8, True), ("root", 25, False)]
    assert diags == []


def test_quote_in_the_middle_of_a_word_splits_it() -> None:
    toks, _ = lex('10.0.0.1"10.0.0.2"')
    assert toks == [("10.0.0.1", 1, False), ("10.0.0.2", 9, True)]


def test_braces_and_comment_signs_inside_quotes_are_text() -> None:
    toks, _ = lex('script "/bin/echo {x} #y"')
    assert toks[1] == ("/bin/echo {x} #y", 8, True)


def test_no_escape_processing_inside_quotes() -> None:
    toks, diags = lex('"a\\" b"')
    assert toks[0] == ("a\\", 1, True)
    # the trailing quote opens a new, unterminated string
    assert [d.pos.col for d in diags] == [7]


def test_single_quote_is_an_ordinary_character() -> None:
    toks, diags = lex("'10.0.0.5 dev eth1'")
    assert [t[0] for t in toks] == ["'10.0.0.5", "dev", "eth1'"]
    assert diags == []


def test_unterminated_quote_is_an_error_at_the_quote_and_drops_the_rest() -> None:
    toks, diags = lex('notification_email_from "foo bar')
    assert toks == [("notification_email_from", 1, False)]
    assert len(diags) == 1
    d = diags[0]
    assert d.severity == Severity.ERROR
    assert d.pos == Position("f.conf", 7, 25)
    assert "unterminated quote" in d.message


def test_empty_quoted_string_is_a_token() -> None:
    toks, _ = lex('auth_pass ""')
    assert toks[1] == ("", 11, True)


def test_indent_counts_tabs_to_multiples_of_eight() -> None:
    assert indent_of("    x") == 4
    assert indent_of("\tx") == 8
    assert indent_of("  \tx") == 8
    assert indent_of("\t  x") == 10


def test_srctext_slices_keep_columns() -> None:
    src = SrcText("  abc def", "f", 3, 10)
    assert src.strip().pos(0) == Position("f", 3, 12)
    assert src.slice(6).pos(1) == Position("f", 3, 17)


def test_concat_keeps_each_characters_origin() -> None:
    a = SrcText("ab", "f", 1, 1)
    b = SrcText("cd", "g", 9, 4)
    joined = concat([a, b])
    assert joined.text == "abcd"
    assert joined.pos(1) == Position("f", 1, 2)
    assert joined.pos(2) == Position("g", 9, 4)
    toks = tokenize(concat([SrcText("x ", "f", 1, 1), SrcText("yz", "g", 2, 5)]), [])
    assert [(t.text, t.pos) for t in toks] == [("x", Position("f", 1, 1)),
                                               ("yz", Position("g", 2, 5))]
