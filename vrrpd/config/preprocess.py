"""keepalived's line preprocessor: include, ``@id`` conditionals, ``$NAME``
definitions and substitution, ``~SEQ``/``~LST`` line generators.

The output is a list of :class:`Line`: the tokens of one keepalived line (braces
still inside) and, when the line began a physical line, its indentation (used
for the "missing ``}``" hint).  Semantics follow keepalived.conf(5), sections
"Conditional configuration and configuration id", "Parameter substitution",
"Sequence blocks" and "List blocks".
"""

from __future__ import annotations

import glob
import os
import random
import re
from dataclasses import dataclass, field

from vrrpd.config.errors import Diagnostic, Position, Severity
from vrrpd.config.fastnew import token_factory
from vrrpd.config.inputs import ConfigInputs
from vrrpd.config.lexer import SrcText, concat, indent_of, strip_comment, tokenize
from vrrpd.config.linegen import expand_braces, matching_paren, parse_lst, parse_seq
from vrrpd.config.nodes import Token
from vrrpd.config.words import INCLUDE_KEYWORDS

_DEF_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", re.S)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GEN_RE = re.compile(r"~(SEQx?|LST)\(")
_PLAIN_RE = re.compile(r"[#!\"'$@~\\]")
_WORD_RE = re.compile(r"[{}]|[^\s{}]+")
MAX_EXPANSION_DEPTH = 50
MAX_GENERATED_LINES = 1_000_000
# $NAME expansion can grow a line exponentially ($A=$B $B, $B=$C $C, ...): cap the length of
# one expanded line and the characters all expansions of a config may produce.
MAX_EXPANDED_LINE = 50_000
MAX_EXPANDED_TOTAL = 20_000_000


# One keepalived line: its tokens, and its indentation when it began a physical
# line (None for lines produced by expansion after the first).  A plain tuple:
# ~90k of them are made for a large config.
Line = tuple[list[Token], int | None]


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    lines: tuple[SrcText, ...]  # one for a plain definition, several for multi-line
    pos: Position


@dataclass
class _Frame:
    """State while reading one file."""

    path: str  # as shown in positions
    real: str  # realpath, for loop detection
    directory: str


@dataclass
class Preprocessor:
    config_id: str
    diagnostics: list[Diagnostic]
    lines: list[Line] = field(default_factory=list)
    defs: dict[str, Definition] = field(default_factory=dict)
    _stack: list[_Frame] = field(default_factory=list)
    _generated: int = 0
    _expanded: int = 0
    inputs: ConfigInputs | None = None  # records files and include matches (fast_start)

    # ---- files -------------------------------------------------------------

    def run_file(self, path: str, *, include_pos: Position | None = None) -> None:
        shown = os.fspath(path)
        real = os.path.realpath(shown)
        for frame in self._stack:
            if frame.real == real:
                assert include_pos is not None
                chain = " -> ".join(f.path for f in self._stack) + f" -> {shown}"
                self._diag(Severity.ERROR, include_pos,
                           f"include loop: {shown} is already being read ({chain})",
                           "this include is skipped")
                return
        try:
            with open(shown, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            sev = Severity.FATAL if include_pos is None else Severity.ERROR
            pos = include_pos or Position(shown, 0, 0)
            self._diag(sev, pos, f"cannot read config file {shown}: {exc.strerror or exc}")
            return
        if self.inputs is not None:
            self.inputs.read(shown, data)
        text = data.decode("utf-8", errors="replace")
        self.run_text(text, shown, os.path.dirname(real) or ".", real=real)

    def run_text(self, text: str, filename: str, directory: str, *,
                 real: str | None = None, first_line: int = 1) -> None:
        """Preprocess ``text`` as the contents of ``filename``; its first line is numbered
        ``first_line`` (>1: a slice of the file, re-read by :mod:`vrrpd.config.incremental`)."""
        self._stack.append(_Frame(filename, real or f"<text:{filename}>", directory))
        saved_pwd = self.defs.get("_PWD")
        self.defs["_PWD"] = Definition("_PWD", (SrcText(directory, filename, 0),),
                                       Position(filename, 0, 0))
        try:
            self._run_lines(text.split("\n"), filename, first_line)
        finally:
            self._stack.pop()
            if saved_pwd is not None:
                self.defs["_PWD"] = saved_pwd

    def _run_lines(self, physical: list[str], filename: str, first_line: int = 1) -> None:
        out = self.lines
        plain = _PLAIN_RE.search
        words = _WORD_RE.finditer
        make_token = token_factory(filename)
        lines = enumerate(physical, first_line)
        for lineno, raw in lines:
            if plain(raw) is None:
                # Fast path: no comment, quote, $, @, ~ or backslash on the line.
                split = raw.split()
                if not split:
                    continue
                if split[0] in INCLUDE_KEYWORDS:
                    self._include(SrcText(raw.strip(), filename, lineno, raw.find(split[0]) + 1),
                                  split[0])
                    continue
                if ("{" in raw or "}" in raw) and any(
                        len(w) > 1 and ("{" in w or "}" in w) for w in split):
                    # a brace glued to a word ("3306{", "}}"): the regex splits it off
                    toks = [make_token(m.group(), lineno, m.start() + 1) for m in words(raw)]
                else:  # words and free-standing braces: split is cheaper than a regex
                    toks = []
                    at = 0
                    for word in split:
                        at = raw.find(word, at)
                        toks.append(make_token(word, lineno, at + 1))
                        at += len(word)
                lead = toks[0].pos.col - 1
                out.append((toks, lead if raw.find("\t", 0, lead) == -1
                            else len(raw[:lead].expandtabs(8))))
                continue
            text = strip_comment(raw)
            stripped = text.strip()
            if not stripped:
                continue
            indent = indent_of(text)
            col = len(text) - len(text.lstrip()) + 1
            src = SrcText(stripped, filename, lineno, col)
            first = stripped.split(None, 1)[0]
            if first in INCLUDE_KEYWORDS:
                self._include(src, first)
                continue
            if stripped.endswith("\\") and "$" in stripped:
                body = _after_condition(src)
                m = _DEF_RE.match(body.text)
                if m:
                    parts = [body.slice(m.start(2)).strip()]
                    while parts[-1].text.endswith("\\"):
                        last = parts[-1]
                        parts[-1] = last.slice(0, len(last.text) - 1).strip()
                        following = next(lines, None)
                        if following is None:
                            break
                        nxt = strip_comment(following[1])
                        ncol = len(nxt) - len(nxt.lstrip()) + 1
                        parts.append(SrcText(nxt.strip(), filename, following[0], ncol))
                    if self._strip_condition(src) is not None:
                        value = tuple(p for p in parts if p.text)
                        self.defs[m.group(1)] = Definition(m.group(1), value, body.pos(0))
                    continue
            self._process(src, indent, 0)

    def _include(self, src: SrcText, keyword: str) -> None:
        # The pattern is the raw rest of the line: csh braces ({a,b}) are not blocks here.
        rest = src.slice(len(keyword)).strip()
        frame = self._stack[-1]
        if not rest.text:
            self._diag(Severity.ERROR, src.pos(0), f"'{keyword}' needs a file name or pattern")
            return
        pattern = rest.text
        if len(pattern) >= 2 and pattern[0] == pattern[-1] == '"':
            pattern = pattern[1:-1]
        toks = [Token(keyword, src.pos(0)), Token(pattern, rest.pos(0))]
        full = pattern if os.path.isabs(pattern) else os.path.join(frame.directory, pattern)
        matches: list[str] = []
        expanded = expand_braces(full)
        for pat in expanded:
            found = (sorted(glob.glob(pat)) if glob.has_magic(pat)
                     else [pat] if os.path.exists(pat) else [])
            if self.inputs is not None:
                self.inputs.globbed(pat, found)
            matches.extend(found)
        if not matches:
            # A pattern matching nothing is normal (an empty conf.d/): silent, as keepalived;
            # a plain file name that does not exist is worth a warning (keepalived logs it).
            if len(expanded) == 1 and not glob.has_magic(full):
                self._diag(Severity.WARNING, toks[1].pos,
                           f"include {pattern!r}: no such file",
                           "nothing is included; keepalived logs the same and goes on")
            return
        for path in matches:
            if not os.path.isfile(path):  # a directory, a device, a FIFO: never read
                self._diag(Severity.WARNING, toks[1].pos,
                           f"include {pattern!r}: {path} is not a regular file, skipped")
                continue
            self.run_file(path, include_pos=toks[0].pos)

    # ---- one line ----------------------------------------------------------

    def _strip_condition(self, src: SrcText) -> SrcText | None:
        """Apply a leading ``@ID``/``@^ID``: None drops the line."""
        text = src.text
        if not text.startswith("@"):
            return src
        negate = text.startswith("@^")
        start = 2 if negate else 1
        end = start
        while end < len(text) and text[end] not in " \t":
            end += 1
        word = text[start:end]
        keep = (word == self.config_id) != negate
        if not keep:
            return None
        return src.slice(end).lstrip()

    def _process(self, src: SrcText, indent: int | None, depth: int) -> None:
        if depth > MAX_EXPANSION_DEPTH:
            names = ", ".join(dict.fromkeys(f"${name}" for _s, _e, name in self._refs(src.text)))
            self._diag(Severity.ERROR, src.pos(0),
                       f"parameter expansion does not terminate after {MAX_EXPANSION_DEPTH} "
                       f"levels ({names or 'a definition'} still refers back to itself)",
                       "the line is ignored; keepalived 2.2.7 loops forever on it")
            return
        body = self._strip_condition(src)
        if body is None or not body.text:
            return
        text = body.text
        if text[0] == "$":
            m = _DEF_RE.match(text)
            if m:
                value = body.slice(m.start(2)).strip()
                self.defs[m.group(1)] = Definition(
                    m.group(1), (value,) if value.text else (), body.pos(0))
                return
        if text[0] == "~" and _GEN_RE.match(text):
            self._generate(body, indent, depth)
            return
        if "$" in text:
            size = self._expanded_size(text)
            self._expanded += size
            if size > MAX_EXPANDED_LINE or self._expanded > MAX_EXPANDED_TOTAL:
                self._diag(Severity.ERROR, body.pos(0),
                           f"parameter expansion of this line grows too large ({size} "
                           f"characters; a definition doubles at each level?)",
                           "the line is ignored")
                return
            expanded = self._substitute(body)
            if expanded is not None:
                for k, piece in enumerate(expanded):
                    piece = piece.strip()
                    if piece.text:
                        self._process(piece, indent if k == 0 else None, depth + 1)
                return
            self._warn_undefined(body)
        self.lines.append((tokenize(body, self.diagnostics), indent))

    # ---- substitution ------------------------------------------------------

    def _lookup(self, name: str, use: Position) -> list[SrcText] | None:
        if name in ("_HASH", "_BANG", "_INSTANCE") or name.startswith("_RANDOM"):
            value = self._predefined(name, use)
            if value is None:
                return None
            return [SrcText(value, use.file, use.line, use.col,
                            tuple(use for _ in value))]
        d = self.defs.get(name)
        if d is None:
            return None
        out = []
        for line in d.lines:
            origins = tuple(
                Position(use.file, use.line, use.col,
                         (*use.via, Position(o.file, o.line, o.col)))
                for o in line.all_origins())
            out.append(SrcText(line.text, use.file, use.line, use.col, origins))
        return out

    def _predefined(self, name: str, use: Position) -> str | None:
        if name == "_HASH":
            return "#"
        if name == "_BANG":
            return "!"
        if name == "_INSTANCE":
            return self.config_id
        words = name.split()
        if words[0] != "_RANDOM":
            return None
        if self.inputs is not None:
            self.inputs.deterministic = False
        try:
            lo = int(words[1]) if len(words) > 1 else 0
            hi = int(words[2]) if len(words) > 2 else 32767
        except ValueError:
            self._diag(Severity.ERROR, use, f"bad ${{_RANDOM}} bounds in {name!r}")
            return None
        if lo > hi:
            lo, hi = hi, lo
        return str(random.randint(lo, hi))

    def _refs(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, name) of every ``$NAME `` / ``${NAME}`` reference."""
        refs = []
        i = text.find("$")
        n = len(text)
        while i != -1:
            if i + 1 < n and text[i + 1] == "{":
                close = text.find("}", i + 2)
                if close != -1:
                    name = text[i + 2:close]
                    if _NAME_RE.fullmatch(name) or name.startswith("_RANDOM"):
                        refs.append((i, close + 1, name))
                        i = text.find("$", close + 1)
                        continue
            else:
                m = _NAME_RE.match(text, i + 1)
                if m and (m.end() == n or text[m.end()] in " \t"):
                    refs.append((i, m.end(), m.group(0)))
                    i = text.find("$", m.end())
                    continue
            i = text.find("$", i + 1)
        return refs

    def _expanded_size(self, text: str) -> int:
        """Length of ``text`` after one round of substitution (cheap: no origins built)."""
        size = len(text)
        for start, end, name in self._refs(text):
            d = self.defs.get(name)
            if d is not None:
                size += sum(len(line.text) for line in d.lines) - (end - start)
        return size

    def _substitute(self, src: SrcText) -> list[SrcText] | None:
        """Replace every defined reference once; None when nothing changed."""
        text = src.text
        out: list[list[SrcText]] = [[]]
        last = 0
        changed = False
        for start, end, name in self._refs(text):
            value = self._lookup(name, src.pos(start))
            if value is None:
                continue
            changed = True
            out[-1].append(src.slice(last, start))
            if value:
                out[-1].append(value[0])
                for extra in value[1:]:
                    out.append([extra])
            last = end
        if not changed:
            return None
        out[-1].append(src.slice(last))
        return [concat([p for p in parts if p.text] or [src.slice(0, 0)]) for parts in out]

    def _warn_undefined(self, src: SrcText) -> None:
        for start, _end, name in self._refs(src.text):
            if self._lookup(name, src.pos(start)) is None:
                self._diag(Severity.WARNING, src.pos(start),
                           f"${name} is not defined and is left as written",
                           "keepalived does the same; define it with $NAME=value")

    # ---- ~SEQ / ~LST ---------------------------------------------------------

    def _generate(self, src: SrcText, indent: int | None, depth: int) -> None:
        text = src.text
        m = _GEN_RE.match(text)
        assert m is not None
        kind = m.group(1)
        close = matching_paren(text, m.end() - 1)
        if close == -1:
            self._diag(Severity.ERROR, src.pos(0), f"~{kind}( without a closing ')'",
                       "the line is ignored")
            return
        spec = text[m.end():close]
        rest = src.slice(close + 1).strip()
        rows = parse_seq(kind, spec, MAX_GENERATED_LINES) if kind != "LST" else parse_lst(spec)
        if isinstance(rows, str):
            self._diag(Severity.ERROR, src.pos(0), rows, "the line is ignored")
            return
        saved = {name: self.defs.get(name) for row in rows[:1] for name, _ in row}
        pos = src.pos(0)
        try:
            for row in rows:
                self._generated += 1
                if self._generated > MAX_GENERATED_LINES:
                    self._diag(Severity.ERROR, pos, "~SEQ/~LST generate too many lines")
                    return
                for name, value in row:
                    self.defs[name] = Definition(
                        name, (SrcText(value, pos.file, pos.line, pos.col,
                                       tuple(pos for _ in value)),), pos)
                if rest.text:
                    self._process(rest, indent, depth + 1)
        finally:
            for name, old in saved.items():
                if old is None:
                    self.defs.pop(name, None)
                else:
                    self.defs[name] = old

    def _diag(self, sev: Severity, pos: Position, msg: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(sev, pos, msg, hint))


def _after_condition(src: SrcText) -> SrcText:
    """The line without a leading ``@ID``/``@^ID`` word (not evaluated)."""
    if not src.text.startswith("@"):
        return src
    end = 1
    while end < len(src.text) and src.text[end] not in " \t":
        end += 1
    return src.slice(end).lstrip()
