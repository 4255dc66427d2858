"""Keyword tables: the small machinery every ``blocks_*`` module builds its block from.

A :class:`Block` maps keyword -> handler.  A handler reads one :class:`Node`
and stores typed values into a plain dict (``Values``) under the model's field
names; the block module then builds the frozen dataclass from that dict, so a
field absent from the dict takes the model's default (or an inherited value).

Diagnostics follow keepalived's severities: unknown keyword -> WARNING with a
"did you mean"; a bad value -> ERROR and the value is ignored (keepalived logs
and keeps its default, ``-t`` exits 5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from vrrpd.config.errors import Diagnostic, Position, Severity, did_you_mean
from vrrpd.config.model_common import Command
from vrrpd.config.nodes import Node, Token
from vrrpd.config.support import NOT_ACTED_YET
from vrrpd.config.syntax import split_command
from vrrpd.config.values import Invalid, Parser, boolean

T = TypeVar("T")
Values = dict[str, Any]
Handler = Callable[["Ctx", Node, Values], None]

NOT_ACTED = "is parsed but not acted on yet by vrrpd"
UNKNOWN_POS = Position("<config>", 0, 0)


class Ctx:
    """Collects diagnostics while one config is loaded."""

    __slots__ = ("diagnostics",)

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics

    def warn(self, pos: Position | None, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(Severity.WARNING, pos or UNKNOWN_POS, message, hint))

    def error(self, pos: Position | None, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(Severity.ERROR, pos or UNKNOWN_POS, message, hint))

    def fatal(self, pos: Position | None, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(Severity.FATAL, pos or UNKNOWN_POS, message, hint))

    def invalid(self, tok: Token, keyword: str, expected: str) -> None:
        self.error(tok.pos, f"invalid value for '{keyword}': expected {expected}, "
                            f"found '{tok.text}'")

    def parse(self, tok: Token, keyword: str, parser: Parser[T]) -> T | None:
        try:
            return parser(tok.text)
        except Invalid as exc:
            self.invalid(tok, keyword, exc.expected)
            return None

    def arg(self, node: Node, parser: Parser[T], *, index: int = 0,
            extra_ok: bool = False) -> T | None:
        """Parse ``node.args[index]``; report a missing value or (unless ``extra_ok``) extras."""
        if len(node.args) <= index:
            self.error(node.pos, f"'{node.name}' needs a value: expected {expected_of(parser)}")
            return None
        if not extra_ok and len(node.args) > index + 1:
            self.extra(node, index + 1)
        return self.parse(node.args[index], node.name, parser)

    def extra(self, node: Node, first: int) -> None:
        words = " ".join(t.text for t in node.args[first:])
        self.warn(node.args[first].pos, f"extra arguments after '{node.name}' ignored: '{words}'")

    def not_acted(self, node: Node, what: str | None = None) -> None:
        self.warn(node.pos, f"'{what or node.name}' {NOT_ACTED}")


def expected_of(parser: Parser[Any]) -> str:
    try:
        parser("")
    except Invalid as exc:
        return exc.expected
    return "a value"


class Block:
    """A keyword table for one kind of block."""

    __slots__ = ("keywords", "not_acted", "title")

    def __init__(self, title: str, keywords: Mapping[str, Handler]) -> None:
        self.title = title
        self.keywords = dict(keywords)
        self.not_acted = NOT_ACTED_YET.get(title, {})

    def run(self, ctx: Ctx, node: Node, values: Values | None = None) -> Values:
        """Dispatch every child of ``node``; returns the filled ``values``."""
        values = {} if values is None else values
        if node.children is None:
            ctx.error(node.pos, f"'{node.name}' expects a '{{ ... }}' block",
                      "its settings are missing")
            return values
        keywords = self.keywords
        not_acted = self.not_acted
        for child in node.children:  # dispatch() inlined: this loop sees every config line
            name = child.keyword.text
            handler = keywords.get(name)
            if handler is None:
                self.unknown(ctx, child)
                continue
            handler(ctx, child, values)
            if name in not_acted:
                self.warn_not_acted(ctx, child)
        return values

    def dispatch(self, ctx: Ctx, child: Node, values: Values) -> None:
        name = child.keyword.text
        handler = self.keywords.get(name)
        if handler is None:
            self.unknown(ctx, child)
            return
        handler(ctx, child, values)
        if name in self.not_acted:
            self.warn_not_acted(ctx, child)

    def unknown(self, ctx: Ctx, child: Node) -> None:
        ctx.warn(child.pos, f"unknown keyword '{child.keyword.text}' in {self.title}",
                 did_you_mean(child.keyword.text, self.keywords) or "it is ignored")

    def warn_not_acted(self, ctx: Ctx, child: Node) -> None:
        hint = self.not_acted[child.keyword.text]
        if hint is not None and hint.startswith("only partly"):
            ctx.warn(child.pos, f"'{child.keyword.text}' is only partly acted on by vrrpd",
                     hint[len("only partly: "):])
        else:
            ctx.warn(child.pos, f"'{child.keyword.text}' {NOT_ACTED}", hint)


# ------------------------------------------------------------ handler factories

def _no_block(ctx: Ctx, node: Node) -> None:
    if node.children is not None:
        ctx.warn(node.pos, f"'{node.name}' takes no '{{ ... }}' block; its contents are ignored")


def value(field: str, parser: Parser[Any], *, extra_ok: bool = False) -> Handler:
    """``keyword VALUE``: a bad value is reported and ignored (the default stays)."""

    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        args = node.args
        if len(args) == 1 and node.children is None:  # the common case, kept fast
            tok = args[0]
            try:
                values[field] = parser(tok.text)
            except Invalid as exc:
                ctx.invalid(tok, node.keyword.text, exc.expected)
            return
        _no_block(ctx, node)
        got = ctx.arg(node, parser, extra_ok=extra_ok)
        if got is not None:
            values[field] = got

    return handle


def text(field: str) -> Handler:
    """``keyword WORD...``: the words joined by one space."""

    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        _no_block(ctx, node)
        if not node.args:
            ctx.error(node.pos, f"'{node.name}' needs a value")
            return
        values[field] = " ".join(t.text for t in node.args)

    return handle


def flag(field: str, on: Any = True) -> Handler:
    """``keyword [BOOL]``: alone means ``on``; ``false|off|no`` means not set."""

    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        _no_block(ctx, node)
        if not node.args:
            values[field] = on
            return
        got = ctx.arg(node, boolean)
        if got is not None:
            values[field] = on if got else (False if on is True else None)

    return handle


def make_command(ctx: Ctx, node: Node, *, user_allowed: bool = True) -> Command | None:
    """A script keyword's value.  ``user_allowed``: words after the command are
    ``user [group]`` (notify*, quorum_*); else keepalived ignores them (``script``,
    ``misc_path``, which have a separate ``user`` keyword)."""
    if not node.args:
        usage = ' "/path/to/script arg"' + (" [user [group]]" if user_allowed else "")
        ctx.error(node.pos, f"'{node.name}' needs a command, e.g. {node.name}{usage}")
        return None
    if not user_allowed and len(node.args) > 1:
        words = " ".join(t.text for t in node.args[1:])
        ctx.warn(node.args[1].pos, f"words after the '{node.name}' command are ignored: '{words}'",
                 f"quote the whole command line, e.g. {node.name} \"{node.args[0].text} {words}\"")
        argv, user, group = split_command(node.args[0], ())
    else:
        if len(node.args) > 3:
            ctx.extra(node, 3)
        argv, user, group = split_command(node.args[0], node.args[1:3])
    if not argv:
        ctx.error(node.args[0].pos, f"'{node.name}' has an empty command")
        return None
    return Command(argv=argv, user=user, group=group, pos=node.args[0].pos)


def command(field: str, *, user_allowed: bool = True) -> Handler:
    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        _no_block(ctx, node)
        cmd = make_command(ctx, node, user_allowed=user_allowed)
        if cmd is not None:
            values[field] = cmd

    return handle


def not_acted(handler: Handler | None = None, what: str | None = None) -> Handler:
    """Parse with ``handler`` (if any) and warn that vrrpd does not act on it yet."""

    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        if handler is not None:
            handler(ctx, node, values)
        ctx.not_acted(node, what)

    return handle


def deprecated(handler: Handler, message: str) -> Handler:
    """Accept an old keyword with a deprecation WARNING, then handle it."""

    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        ctx.warn(node.pos, f"'{node.name}' is deprecated: {message}")
        handler(ctx, node, values)

    return handle


def ignored(message: str) -> Handler:
    """Accept and drop with a WARNING explaining why (e.g. nat_mask)."""

    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        ctx.warn(node.pos, f"'{node.name}' {message}")

    return handle


def sub_block(field: str, block: Block) -> Handler:
    """A nested ``keyword { ... }`` whose values land in a dict under ``field``."""

    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        values[field] = block.run(ctx, node, values.get(field))

    return handle


def line_list(field: str, parse_line: Callable[[Ctx, Node, Sequence[Token]], Any]) -> Handler:
    """``keyword { LINE ... }``: each child line (keyword + args) parsed by ``parse_line``.

    ``parse_line`` returns the item or None (already reported).  Repeated
    blocks accumulate, as in keepalived.
    """

    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        if node.children is None:
            ctx.error(node.pos, f"'{node.name}' expects a '{{ ... }}' block with one item "
                                f"per line")
            return
        items = list(values.get(field, ()))
        for child in node.children:
            if child.children is not None:
                ctx.warn(child.pos, f"unexpected block inside '{node.name}'; it is ignored")
                continue
            item = parse_line(ctx, child, (child.keyword, *child.args))
            if item is not None:
                items.append(item)
        values[field] = tuple(items)

    return handle


def known_not_acted(names: Iterable[str]) -> dict[str, Handler]:
    """keepalived keywords we recognise but do not implement: a WARNING each."""
    return {name: not_acted() for name in names}
