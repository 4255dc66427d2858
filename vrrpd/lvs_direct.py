"""Cold start with no cache: the initial IPVS table of a plain config, read straight from its
text, before the config reader is imported.

In the slow test guest the daemon needs ~4 s to import its config reader and ~4 s to parse a
1,000-service config before the first service can go in; keepalived has its table up by then.
:func:`requests_of` reads the config's ``virtual_server`` blocks with nothing but ``_socket``,
``struct`` and :mod:`vrrpd.config.words` (no ``re``, no ``socket``: 0.3 s of imports there),
and returns the requests that build the table the full reader will want at start (the bytes
:func:`vrrpd.lvs_cache.build_requests` makes from the compiled config, tested equal on every
example config and on generated ones), or the reason it cannot.

It reads only what it is sure of and answers "not sure" for everything else, so the full path
programs those configs as before: any ``$``, ``~``, ``@`` line or include; a line not ASCII
once its comment is cut; a brace or quote the full reader would report; ``lvs_flush``;
``virtual_server_group``, fwmark and port-0 services; TUN; sorry servers, ``alpha``, ops,
scheduler flags, persistence granularity or engine, ``ip_family``; a duplicate service or real
server; a value out of range; a keyword it does not know.  Whatever it programs, the daemon's
first sync compares with the full reader's desired state and repairs
(``lvs_fast_start_mismatch`` is logged if it had to).
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its enums cost start-up time (ipvs.replay)
import gc

from ipvs.attrs import (
    IPVS_CMD_NEW_DEST,
    IPVS_CMD_NEW_SERVICE,
    dest_attr,
    key_parts,
    nested,
    service_parts,
)
from vrrpd.config.words import INCLUDE_KEYWORDS, UnterminatedQuote, split_words, strip_comment

TYPE_CHECKING = False
if TYPE_CHECKING:
    # A line is the list of its words (keyword first), a block (keyword, args, children): the
    # list str.split() made is the node, nothing else is allocated for the ~2/3 of the lines
    # that are not blocks.
    Block = tuple[str, list[str], list["Node"]]
    Node = list[str] | Block

__all__ = ["requests_of", "requests_of_text"]

SCHEDULERS = frozenset({"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo",
                        "ovf", "mh", "twos"})
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
FORWARD = {"NAT": 0, "DR": 3}  # IP_VS_CONN_F_MASQ / _DROUTE; TUN: the full path
CHECKERS = frozenset({"TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK",
                      "DNS_CHECK", "UDP_CHECK", "PING_CHECK", "ICMP_CHECK", "FILE_CHECK"})
# keywords whose value cannot change the initial table of a virtual server this module
# accepts (no sorry server, no alpha): timers, alerts, scripts, quorum, inhibit_on_failure
_SHARED_NEUTRAL = frozenset({"delay_loop", "connect_timeout", "retry", "nb_get_retry",
                             "delay_before_retry", "warmup", "snmp_name", "virtualhost",
                             "smtp_alert", "inhibit_on_failure"})
VS_NEUTRAL = _SHARED_NEUTRAL | {"ha_suspend", "omega", "quorum", "hysteresis", "quorum_up",
                                "quorum_down", "nat_mask"}
RS_NEUTRAL = _SHARED_NEUTRAL | {"notify_up", "notify_down", "BFD_CHECK"}
MAX_WEIGHT = 2**31 - 1
_AF_INET, _inet_pton = socket.AF_INET, socket.inet_pton


class NotSure(Exception):
    """The config holds something this reader leaves to the full one (the text says what)."""


def requests_of(path: str) -> tuple[bytes, list[bytes], int] | str:
    """(one command byte per request, their attributes, services) for the config file at
    ``path``, or why not.  Never raises."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return requests_of_text(data.decode("utf-8", errors="replace"))


def requests_of_text(text: str) -> tuple[bytes, list[bytes], int] | str:
    enabled = gc.isenabled()
    gc.disable()  # ~100k short-lived lists, no cycles: collections would only cost (~30%)
    try:
        return _requests(tree(text))
    except NotSure as exc:
        return str(exc)
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------- text -> blocks


def tree(text: str) -> list[Node]:
    """The block structure, as ``vrrpd.config.syntax.build_tree`` reads it: a line is the
    list of its words, a block ``(keyword, args, children)``; quoted words keep their quotes.
    """
    if "$" in text or "~" in text or "\\" in text:
        raise NotSure("preprocessor")  # $NAME, ~SEQ/~LST, continuation lines
    # the rare cases are looked for line by line only when the text holds them at all
    ascii = text.isascii()  # else: whitespace is what the lexer's line paths disagree on
    plain = "#" not in text and "!" not in text and '"' not in text
    special = not ascii or "@" in text or "include" in text  # @id lines, include lines
    top: list[Node] = []
    stack: list[list[Node]] = []
    siblings = top
    append = top.append
    for raw in text.split("\n"):
        if plain or ("#" not in raw and "!" not in raw and '"' not in raw):
            toks = raw.split()
            if not toks:
                continue
            if special:
                _check_line(raw, toks)
            if "{" not in raw:
                if "}" not in raw:  # most lines: "keyword value..."
                    append(toks)
                    continue
                if len(toks) == 1 and toks[0] == "}":
                    if not stack:
                        raise NotSure("brace")
                    siblings = stack.pop()
                    append = siblings.append
                    continue
            elif toks[-1] == "{" and len(toks) > 1 and "}" not in raw and raw.count("{") == 1:
                block: Block = (toks[0], toks[1:-1], [])
                append(block)
                stack.append(siblings)
                siblings = block[2]
                append = siblings.append
                continue
            toks = raw.replace("{", " { ").replace("}", " } ").split()  # glued braces
        else:
            raw = strip_comment(raw)
            try:
                toks = split_words(raw)
            except UnterminatedQuote:
                raise NotSure("unterminated_quote") from None
            if not toks:
                continue
            if special:
                _check_line(raw, toks)
        # the general case, build_tree's rules: '{' or '}' ends the line; '{' opens the block
        # of the keyword before it on the line or, first on its line, of the line before
        kw: str | None = None
        args: list[str] = []
        first = True
        for tok in toks:
            if tok == "{":
                if kw is not None:
                    block = (kw, args, [])
                    append(block)
                elif first and siblings and type(words := siblings[-1]) is list:
                    block = (words[0], words[1:], [])  # a brace alone on its line: the
                    siblings[-1] = block  # keyword before
                else:
                    raise NotSure("brace")
                stack.append(siblings)
                siblings = block[2]
                append = siblings.append
                kw, args, first = None, [], False
            elif tok == "}":
                if kw is not None:
                    append([kw, *args])
                    kw, args = None, []
                if not stack:
                    raise NotSure("brace")
                siblings = stack.pop()
                append = siblings.append
                first = False
            elif kw is None:
                kw = tok
            else:
                args.append(tok)
        if kw is not None:
            append([kw, *args])
    if stack:
        raise NotSure("unclosed_block")
    return top


def _check_line(raw: str, toks: list[str]) -> None:
    if not raw.isascii():
        raise NotSure("not_ascii")
    if toks[0][0] == "@":
        raise NotSure("preprocessor")
    if toks[0] in INCLUDE_KEYWORDS:
        raise NotSure("include")


# ---------------------------------------------------------------- blocks -> requests


_INTS: dict[str, int] = {}


def _int(text: str, lo: int, hi: int, what: str) -> int:
    """keepalived's integer (``vrrpd.config.values.int_range``: an optional sign, digits)."""
    value = _INTS.get(text)
    if value is None:
        digits = text[1:] if text[:1] in ("+", "-") else text
        if not digits or not digits.isdigit():  # ASCII text: isdigit() is [0-9]
            raise NotSure(f"value:{what}")
        value = _INTS[text] = int(text)
    if not lo <= value <= hi:
        raise NotSure(f"value:{what}")
    return value


def _addr(text: str) -> tuple[int, bytes]:
    for af in (socket.AF_INET, socket.AF_INET6):
        try:
            return af, socket.inet_pton(af, text)
        except (OSError, ValueError):
            pass
    raise NotSure("value:address")


def _one(node: Node, what: str) -> str:
    """The single value of a line (a block, or more or fewer words: not sure)."""
    if type(node) is not list or len(node) != 2:
        raise NotSure(f"form:{what}")
    return node[1]


def _has_alpha(nodes: list[Node]) -> bool:
    return any(n[0] == "alpha" or (type(n) is tuple and _has_alpha(n[2])) for n in nodes)


def _method(node: Node) -> int:
    got = FORWARD.get(_one(node, "lvs_method"))
    if got is None:
        raise NotSure("value:lvs_method")
    return got


class _Service:
    """One ``virtual_server`` block's settings (its real servers are read after them: a
    real server inherits the block's method wherever it stands)."""

    __slots__ = ("af", "forward", "protocol", "scheduler", "servers", "timeout")

    def __init__(self, af: int) -> None:
        self.af = af
        self.scheduler, self.protocol, self.forward, self.timeout = "wlc", 17, 0, 0
        self.servers: list[Block] = []

    def setting(self, child: Node) -> None:
        kw = child[0]
        if kw in ("lb_algo", "lvs_sched"):
            self.scheduler = _one(child, "scheduler")
            if self.scheduler not in SCHEDULERS:
                raise NotSure("value:scheduler")
        elif kw == "protocol":
            got = PROTOCOLS.get(_one(child, "protocol").lower())
            if got is None:
                raise NotSure("value:protocol")
            self.protocol = got
        elif kw in ("lb_kind", "lvs_method"):
            self.forward = _method(child)
        elif kw == "persistence_timeout":
            if type(child) is not list or len(child) > 2:
                raise NotSure("form:persistence_timeout")
            self.timeout = _int(child[1], 1, 2678400, "persistence_timeout") \
                if len(child) == 2 else 360
        elif kw not in VS_NEUTRAL:
            raise NotSure(f"keyword:virtual_server {kw}")


def _dest(rs: Block, svc: _Service, port: int, seen: set[tuple[bytes, int]]
          ) -> tuple[bytes, int, int, int, int, int]:
    """(packed address, port, forwarding, weight, upper, lower threshold) of a real server
    (added to ``seen``, which must not hold it yet)."""
    _kw, args, children = rs
    if not 1 <= len(args) <= 2:
        raise NotSure("form:real_server")
    try:
        af, addr = _AF_INET, _inet_pton(_AF_INET, args[0])
    except (OSError, ValueError):
        af, addr = _addr(args[0])
    if af != svc.af:
        raise NotSure("real_server_family")
    if len(args) == 2:
        port = _int(args[1], 0, 65535, "port")
    if (addr, port) in seen:
        raise NotSure("duplicate_real_server")
    seen.add((addr, port))
    forward, weight, upper, lower = svc.forward, 1, 0, 0
    for child in children:
        kw = child[0]
        if kw == "weight":
            weight = _int(_one(child, "weight"), 0, MAX_WEIGHT, "weight")
        elif kw == "uthreshold":
            upper = _int(_one(child, "uthreshold"), 0, MAX_WEIGHT, "uthreshold")
        elif kw == "lthreshold":
            lower = _int(_one(child, "lthreshold"), 0, MAX_WEIGHT, "lthreshold")
        elif kw in ("lvs_method", "lb_kind"):
            forward = _method(child)
        elif kw in CHECKERS:
            if type(child) is tuple and _has_alpha(child[2]):
                raise NotSure("alpha")
        elif kw not in RS_NEUTRAL:
            raise NotSure(f"keyword:real_server {kw}")
    return addr, port, forward, weight, upper, lower


def _virtual_server(node: Block) -> tuple[bytes, bytes, list[bytes]]:
    """The service identity, the add-service request's attributes, then those of each
    add-destination."""
    _kw, args, children = node
    if len(args) != 2:
        raise NotSure("form:virtual_server")  # fwmark, group, no port
    af, addr = _addr(args[0])
    port = _int(args[1], 1, 65535, "port")
    svc = _Service(af)
    servers = svc.servers
    for child in children:
        if child[0] == "real_server" and type(child) is tuple:
            servers.append(child)
        else:
            svc.setting(child)
    if not servers:
        raise NotSure("no_real_servers")
    key = key_parts(af, svc.protocol, addr, port, 0)
    service = nested(1, service_parts(key, svc.scheduler, 1 if svc.timeout else 0, svc.timeout,
                                      af, 128 if af == socket.AF_INET6 else 32, ""))
    key_attr = nested(1, key)
    dests = []
    seen: set[tuple[bytes, int]] = set()
    for rs in servers:
        rs_addr, rs_port, forward, weight, upper, lower = _dest(rs, svc, port, seen)
        dests.append(key_attr + dest_attr(af, rs_addr, rs_port, forward, weight, upper, lower,
                                          0, 0, 0))
    return key_attr, service, dests


def _requests(top: list[Node]) -> tuple[bytes, list[bytes], int]:
    cmds = bytearray()
    payloads: list[bytes] = []
    seen = set()
    for node in top:
        kw = node[0]
        if kw == "virtual_server":
            if type(node) is not tuple:
                raise NotSure("form:virtual_server")  # no block
            key, service, dests = _virtual_server(node)
            if key in seen:
                raise NotSure("duplicate_virtual_server")
            seen.add(key)
            cmds.append(IPVS_CMD_NEW_SERVICE)
            payloads.append(service)
            cmds.extend(bytes([IPVS_CMD_NEW_DEST]) * len(dests))
            payloads.extend(dests)
        elif kw == "virtual_server_group":
            raise NotSure("virtual_server_group")
        elif kw == "global_defs" and type(node) is tuple and any(
                c[0] == "lvs_flush" for c in node[2]):
            raise NotSure("lvs_flush")
    if not payloads:
        raise NotSure("no_virtual_servers")
    return bytes(cmds), payloads, len(seen)
