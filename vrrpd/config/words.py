"""keepalived.conf's word rules on plain strings: comments, quotes, braces, whitespace, the
include keywords.

No imports: :mod:`vrrpd.lvs_direct` reads a config with these before anything heavy is
imported (the daemon's cold start), and :mod:`vrrpd.config.lexer` /
:mod:`vrrpd.config.preprocess` apply the same rules with positions.  keepalived 2.2.7
(measured with ``keepalived -t``): ``#`` and ``!`` start a comment anywhere outside quotes;
``"`` starts a quoted word that ends at the next ``"`` (no escapes); ``{`` and ``}`` outside
quotes are words of their own, glued or not.
"""

from __future__ import annotations

QUOTES = '"'
BRACES = "{}"
WHITESPACE = " \t\r\n\f\v"
INCLUDE_KEYWORDS = frozenset({"include", "includer", "includem", "includew", "includeb",
                              "includea", "includet"})
_STOP = WHITESPACE + BRACES + QUOTES


def strip_comment(text: str) -> str:
    """Cut ``text`` at the first ``#``/``!`` outside quotes."""
    if "#" not in text and "!" not in text:
        return text
    if '"' not in text:
        cut = len(text)
        for ch in "#!":
            i = text.find(ch)
            if i != -1 and i < cut:
                cut = i
        return text[:cut]
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in QUOTES:
            quote = ch
        elif ch in "#!":
            return text[:i]
    return text


class UnterminatedQuote(ValueError):
    pass


def split_words(text: str) -> list[str]:
    """The words of a comment-free line as the lexer's general path splits them: whitespace
    :data:`WHITESPACE`, braces alone, a quoted word up to the next quote (kept with its
    quotes, so it never equals a keyword or a brace).  :class:`UnterminatedQuote` when a
    quote is not closed (the lexer reports it and drops the rest of the line)."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in WHITESPACE:
            i += 1
        elif ch in BRACES:
            words.append(ch)
            i += 1
        elif ch in QUOTES:
            end = text.find(ch, i + 1)
            if end == -1:
                raise UnterminatedQuote(text)
            words.append(text[i:end + 1])
            i = end + 1
        else:
            start = i
            while i < n and text[i] not in _STOP:
                i += 1
            words.append(text[start:i])
    return words
