"""Line-level lexing of keepalived.conf: comments, quotes, words and braces.

keepalived 2.2.7 behaviour (measured with ``keepalived -t``):

* ``#`` and ``!`` start a comment anywhere outside quotes.
* ``"`` starts a quoted token (even in the middle of a word: ``ab"c d"`` is the
  two tokens ``ab`` and ``c d``); the token ends at the next ``"``.  No escape
  processing happens (``"a\\"`` ends after the backslash).  A single quote is an
  ordinary character at this level (``'10.0.0.5 dev eth1'`` is three words, the
  first ``'10.0.0.5``, and ``'#'`` still starts a comment); script keywords
  split their quoted command line again, honouring both quote kinds
  (:func:`vrrpd.config.syntax.split_command`).
* ``{`` and ``}`` outside quotes are tokens of their own, glued or not.

A :class:`SrcText` is a piece of text that knows where each character came
from, so tokens keep real positions after ``$NAME`` expansion.
"""

from __future__ import annotations

from dataclasses import dataclass

from vrrpd.config.errors import Diagnostic, Position, Severity
from vrrpd.config.fastnew import new_position, new_token
from vrrpd.config.nodes import Token
from vrrpd.config.words import BRACES, QUOTES, strip_comment  # noqa: F401  (re-exported)
from vrrpd.config.words import WHITESPACE as _WS

_SPECIAL = frozenset('"{}')


@dataclass(frozen=True, slots=True)
class SrcText:
    """Text plus the origin of each character.

    With ``origins`` None the text is a slice of one physical line starting at
    ``col`` (1-based); otherwise ``origins[i]`` is the position of ``text[i]``.
    """

    text: str
    file: str
    line: int
    col: int = 1
    origins: tuple[Position, ...] | None = None

    def pos(self, i: int) -> Position:
        if self.origins is not None:
            if not self.origins:
                return new_position(self.file, self.line, self.col)
            return self.origins[min(i, len(self.origins) - 1)]
        return new_position(self.file, self.line, self.col + i)

    def slice(self, start: int, end: int | None = None) -> SrcText:
        end = len(self.text) if end is None else end
        if self.origins is not None:
            origins = self.origins[start:end]
            first = origins[0] if origins else self.pos(start)
            return SrcText(self.text[start:end], first.file, first.line, first.col, origins)
        return SrcText(self.text[start:end], self.file, self.line, self.col + start)

    def lstrip(self) -> SrcText:
        n = len(self.text) - len(self.text.lstrip(_WS))
        return self.slice(n) if n else self

    def strip(self) -> SrcText:
        st = self.lstrip()
        end = len(st.text.rstrip(_WS))
        return st.slice(0, end) if end != len(st.text) else st

    def all_origins(self) -> tuple[Position, ...]:
        if self.origins is not None:
            return self.origins
        return tuple(Position(self.file, self.line, self.col + i) for i in range(len(self.text)))


def concat(parts: list[SrcText]) -> SrcText:
    """Join pieces of text, keeping each character's origin."""
    if len(parts) == 1:
        return parts[0]
    origins: list[Position] = []
    for p in parts:
        origins.extend(p.all_origins())
    first = parts[0] if parts else SrcText("", "<string>", 0)
    return SrcText("".join(p.text for p in parts), first.file, first.line, first.col,
                   tuple(origins))


def indent_of(text: str) -> int:
    """Width of the leading whitespace, tabs to the next multiple of 8."""
    width = 0
    for ch in text:
        if ch == " ":
            width += 1
        elif ch == "\t":
            width = (width // 8 + 1) * 8
        else:
            break
    return width


def tokenize(src: SrcText, diagnostics: list[Diagnostic]) -> list[Token]:
    """Split one comment-free line into tokens; braces become their own tokens."""
    text = src.text
    if src.origins is None and not _SPECIAL.intersection(text):
        # Fast path: plain words on one physical line.
        tokens: list[Token] = []
        i = 0
        file, line, col = src.file, src.line, src.col
        for word in text.split():
            i = text.index(word, i)
            tokens.append(new_token(word, new_position(file, line, col + i)))
            i += len(word)
        return tokens
    return _tokenize_slow(src, diagnostics)


def _tokenize_slow(src: SrcText, diagnostics: list[Diagnostic]) -> list[Token]:
    text = src.text
    n = len(text)
    tokens: list[Token] = []
    i = 0
    while i < n:
        ch = text[i]
        if ch in _WS:
            i += 1
            continue
        if ch in BRACES:
            tokens.append(new_token(ch, src.pos(i)))
            i += 1
            continue
        if ch in QUOTES:
            end = text.find(ch, i + 1)
            if end == -1:
                diagnostics.append(Diagnostic(
                    Severity.ERROR, src.pos(i),
                    f"unterminated quote {ch} (the rest of the line is ignored)",
                    f"add the closing {ch}",
                ))
                return tokens
            tokens.append(new_token(text[i + 1:end], src.pos(i), True))
            i = end + 1
            continue
        start = i
        while i < n:
            c = text[i]
            if c in _WS or c in BRACES or c in QUOTES:
                break
            i += 1
        tokens.append(new_token(text[start:i], src.pos(start)))
    return tokens
