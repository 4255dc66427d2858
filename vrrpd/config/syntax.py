"""keepalived.conf text -> tuple of :class:`Node`: the block structure.

Public API (used by the typed model in ``loader.py``)::

    read_tree(path, *, config_id, diagnostics) -> tuple[Node, ...]
    read_tree_text(text, *, filename, config_id, diagnostics, base_dir) -> tuple[Node, ...]
    split_command(token, rest) -> (argv, user, group)

Neither reader raises for a bad config: every problem is appended to
``diagnostics`` (``Severity.FATAL`` only for an unreadable main file; an
unclosed block is an ERROR, as keepalived 2.2.7 runs such a config, ``-t`` exit 5).

Block rules (keepalived 2.2.7's, measured): one keyword per line; a ``{`` or ``}``
ends the line and what follows is the next line; ``{`` opens the block of the
keyword on the same line, or, standing first on its line, of the keyword just
before.  So ``real_server A 80 { weight 1 TCP_CHECK { ... } }`` makes
``TCP_CHECK`` an argument of ``weight`` (keepalived: "Unexpected '{'"), exactly as
keepalived reads it; the model then complains about ``weight`` having a block.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from vrrpd.config.errors import Diagnostic, Position, Severity
from vrrpd.config.fastnew import new_node, paused_gc
from vrrpd.config.inputs import ConfigInputs
from vrrpd.config.nodes import Node, Token
from vrrpd.config.preprocess import Line, Preprocessor

__all__ = ["SCRIPT_KEYWORDS", "read_tree", "read_tree_text", "split_command"]

SCRIPT_KEYWORDS = frozenset({
    "script", "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop",
    "notify_deleted", "notify_master_rx_lower_pri", "notify_up", "notify_down",
    "misc_path", "quorum_up", "quorum_down",
})


def read_tree(path: str | os.PathLike[str], *, config_id: str,
              diagnostics: list[Diagnostic],
              inputs: ConfigInputs | None = None) -> tuple[Node, ...]:
    with paused_gc():
        pre = Preprocessor(config_id, diagnostics, inputs=inputs)
        pre.run_file(os.fspath(path))
        return build_tree(pre.lines, diagnostics)


def read_tree_text(text: str, *, filename: str = "<string>", config_id: str = "",
                   diagnostics: list[Diagnostic], base_dir: str | None = None) -> tuple[Node, ...]:
    with paused_gc():
        pre = Preprocessor(config_id, diagnostics)
        pre.run_text(text, filename, base_dir if base_dir is not None else os.getcwd())
        return build_tree(pre.lines, diagnostics)


class _Open:
    """A block under construction (plain class: one per block, kept light)."""

    __slots__ = ("args", "brace", "children", "dropped", "indent", "keyword")

    def __init__(self, keyword: Token, args: list[Token], indent: int | None,
                 brace: Position, dropped: bool = False) -> None:
        self.keyword = keyword
        self.args = args
        self.indent = indent
        self.brace = brace
        self.children: list[Node] = []
        self.dropped = dropped


def build_tree(lines: list[Line], diagnostics: list[Diagnostic]) -> tuple[Node, ...]:
    """Turn keepalived lines (braces still inside) into nodes."""
    top: list[Node] = []
    stack: list[_Open] = []  # open blocks, innermost last
    siblings = top
    # The first '}' standing first on its line that is indented less than the line
    # that opened the block it closes: where a missing '}' most likely shows.
    mismatch: tuple[_Open, Position, int] | None = None
    last_closed: Node | None = None
    prev_indent: int | None = None  # indentation of the line of the last leaf
    for tokens, indent in lines:
        kw: Token | None = None
        args: list[Token] = []
        first = True
        for tok in tokens:
            text = tok.text
            if text == "{" and not tok.quoted:
                if kw is not None:
                    opened = _Open(kw, args, indent if first else None, tok.pos)
                elif first and siblings and siblings[-1].children is None:
                    prev = siblings.pop()  # brace alone on its line: the keyword before
                    opened = _Open(prev.keyword, list(prev.args), prev_indent, tok.pos)
                else:
                    diagnostics.append(Diagnostic(
                        Severity.ERROR, tok.pos, "unexpected '{' with no keyword before it",
                        "its contents are ignored"))
                    opened = _Open(tok, [], None, tok.pos, dropped=True)
                stack.append(opened)
                siblings = opened.children
                kw = None
                args = []
                first = False
            elif text == "}" and not tok.quoted:
                if kw is not None:
                    siblings.append(new_node(kw, tuple(args)))
                    kw = None
                    args = []
                    prev_indent = None
                if not stack:
                    hint = "it is ignored"
                    if last_closed is not None and last_closed.end is not None:
                        hint = (f"it is ignored; the last block, '{last_closed.name}' opened at "
                                f"{last_closed.pos}, was already closed at {last_closed.end}")
                    diagnostics.append(Diagnostic(
                        Severity.ERROR, tok.pos, "'}' without a matching '{'", hint))
                else:
                    closed = stack.pop()
                    siblings = stack[-1].children if stack else top
                    if (mismatch is None and first and indent is not None
                            and closed.indent is not None and indent < closed.indent):
                        mismatch = (closed, tok.pos, indent)
                    if not closed.dropped:
                        last_closed = new_node(closed.keyword, tuple(closed.args),
                                           tuple(closed.children), tok.pos)
                        siblings.append(last_closed)
                first = False
            elif kw is None:
                kw = tok
                if not first:
                    indent = None
            else:
                args.append(tok)
        if kw is not None:
            siblings.append(new_node(kw, tuple(args)))
            prev_indent = indent
    if stack:
        _report_unclosed(stack, mismatch, lines, diagnostics)
        # Close what is open so the model still sees the contents.
        while stack:
            closed = stack.pop()
            siblings = stack[-1].children if stack else top
            if not closed.dropped:
                siblings.append(new_node(closed.keyword, tuple(closed.args),
                                     tuple(closed.children), None))
    return tuple(top)


def _report_unclosed(stack: list[_Open], mismatch: tuple[_Open, Position, int] | None,
                     lines: list[Line], diagnostics: list[Diagnostic]) -> None:
    """One ERROR per block left open (keepalived 2.2.7 logs it and still runs: -t exit 5)."""
    for depth, node in enumerate(stack):
        if node.dropped:
            continue
        opener = node.keyword.pos
        hint = None
        if depth == 0 and mismatch is not None and not mismatch[0].children:
            # An empty block closed by a '}' indented like an outer block: the '{' is extra
            # (``priority 100 {``); report it where it is.
            culprit, closer, _closer_indent = mismatch
            diagnostics.append(Diagnostic(
                Severity.ERROR, culprit.brace,
                f"'{{' after '{culprit.keyword.text}' looks extra: its block is empty and the "
                f"'}}' at {closer} that closes it is indented like an outer block",
                f"so block '{node.keyword.text}' opened at {opener} is never closed; "
                f"remove this '{{'"))
            continue
        if depth == 0 and mismatch is not None:
            culprit, closer, closer_indent = mismatch
            where = _first_line_indented_like(culprit, lines)
            before = (f"line {where.line} ('{where_text}')" if where is not None
                      and (where_text := _text_at(where, lines)) else f"line {closer.line}")
            hint = (f"the '}}' at {closer} (indent {closer_indent}) closes "
                    f"'{culprit.keyword.text}' opened at {culprit.keyword.pos} "
                    f"(indent {culprit.indent}): a '}}' for '{culprit.keyword.text}' is "
                    f"probably missing before {before}")
        elif node.indent is not None:
            where = _first_line_indented_like(node, lines)
            if where is not None:
                hint = (f"the first later line indented like it is line {where.line} "
                        f"('{_text_at(where, lines)}'): the missing '}}' probably belongs "
                        f"just before it")
            else:
                hint = "the missing '}' probably belongs at the end of the file"
        diagnostics.append(Diagnostic(
            Severity.ERROR, node.brace,
            f"block '{node.keyword.text}' opened at {opener} is never closed", hint))


def _first_line_indented_like(node: _Open, lines: list[Line]) -> Position | None:
    """First line after ``node``'s opener, same file, indented no deeper than it."""
    opener = node.keyword.pos
    assert node.indent is not None
    seen = False
    for tokens, indent in lines:
        if not seen:
            seen = bool(tokens) and tokens[0] is node.keyword
            continue
        if indent is None or not tokens:
            continue
        pos = tokens[0].pos
        if pos.file == opener.file and pos.line > opener.line and \
                indent <= node.indent and tokens[0].text != "}":
            return pos
    return None


def _text_at(pos: Position, lines: list[Line]) -> str:
    for tokens, _indent in lines:
        if tokens and tokens[0].pos is pos:
            return tokens[0].text
    return ""


def split_command(token: Token, rest: Sequence[Token]) -> tuple[tuple[str, ...], str | None,
                                                                   str | None]:
    """Split a script keyword's command into argv; ``rest`` gives ``user [group]``.

    Inside the command, whitespace separates arguments and single or double
    quotes group words (``"/bin/check 'a b' c"`` -> ``/bin/check``, ``a b``, ``c``).
    """
    argv = tuple(_split_words(token.text))
    user = rest[0].text if len(rest) > 0 else None
    group = rest[1].text if len(rest) > 1 else None
    return argv, user, group


def _split_words(text: str) -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    have = False
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                cur.append(ch)
        elif ch in "\"'":
            quote = ch
            have = True
        elif ch in " \t":
            if have or cur:
                words.append("".join(cur))
                cur = []
                have = False
        else:
            cur.append(ch)
    if have or cur:
        words.append("".join(cur))
    return words
