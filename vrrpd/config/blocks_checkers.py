"""Checker blocks inside ``real_server``: TCP_CHECK, HTTP_GET, SSL_GET, SMTP_CHECK,
DNS_CHECK, UDP_CHECK, PING_CHECK, MISC_CHECK, FILE_CHECK (BFD_CHECK: not acted on).

Each checker's timers resolve as: its own value, else the real server's, else
the virtual server's, else keepalived's default for that checker type
(retry: 1, DNS 3, MISC 0; delay_before_retry: 1 s, HTTP/SSL 3 s, DNS delay_loop).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from vrrpd.config.model_lvs import (
    Checker,
    DnsCheck,
    FileCheck,
    HttpGetCheck,
    MiscCheck,
    PingCheck,
    SmtpCheck,
    SmtpHost,
    SslGetCheck,
    TcpCheck,
    UdpCheck,
    Url,
)
from vrrpd.config.nodes import Node
from vrrpd.config.schema import (
    Block,
    Ctx,
    Handler,
    Values,
    command,
    deprecated,
    flag,
    ignored,
    not_acted,
    text,
    value,
)
from vrrpd.config.values import Invalid, choice, hex_bytes, int_range, ip_addr, port, seconds, word

# Keys inherited from the real server (which already inherited from the virtual server).
INHERITED = ("connect_timeout", "retry", "delay_before_retry", "warmup", "delay_loop", "alpha")

_TIMER = seconds(0, 1e6)
_MISC_TIMEOUT = int_range(0, 4294)


def _misc_timeout(text: str) -> float | None:
    """keepalived 2.2.7: whole seconds 0..4294 (else 'Invalid misc_timeout value'); 0 = unset,
    the script gets delay_loop."""
    return float(_MISC_TIMEOUT(text)) or None


NB_GET_RETRY_IGNORED = ("is ignored here, as keepalived 2.2.7 ignores it (it knows it only in "
                        "HTTP_GET/SSL_GET): retry keeps its default; did you mean 'retry'?")
_POS_TIMER = seconds(0, 1e6, allow_zero=False)

CONNECTION: dict[str, Handler] = {
    "connect_ip": value("connect_ip", ip_addr),
    "connect_port": value("connect_port", port),
    "bindto": value("bindto", ip_addr),
    "bind_if": value("bind_if", word),
    "bind_port": value("bind_port", port),
    "connect_timeout": value("connect_timeout", seconds(0, 4294.967295, allow_zero=False)),
    "fwmark": value("fwmark", int_range(0, 2**32 - 1)),
}

TIMERS: dict[str, Handler] = {
    "retry": value("retry", int_range(0, 2**31 - 1)),
    # keepalived 2.2.7 knows nb_get_retry only in HTTP_GET/SSL_GET; elsewhere it is an unknown
    # keyword and retry keeps its default. Ignored the same way, so a mixed pair agrees.
    "nb_get_retry": ignored(NB_GET_RETRY_IGNORED),
    "delay_before_retry": value("delay_before_retry", _TIMER),
    "warmup": value("warmup", _TIMER),
    "delay_loop": value("delay_loop", _POS_TIMER),
    "alpha": flag("alpha"),
    "log_all_failures": flag("log_all_failures"),
}

COMMON = {**CONNECTION, **TIMERS}


def _status_code(ctx: Ctx, node: Node, values: Values) -> None:
    ranges: list[tuple[int, int]] = []
    for tok in node.args:
        m = re.fullmatch(r"(\d{3})(?:-(\d{3}))?", tok.text)
        lo = int(m.group(1)) if m else 0
        hi = int(m.group(2) or m.group(1)) if m else 0
        if not m or not (100 <= lo <= hi <= 599):
            ctx.invalid(tok, "status_code", "HTTP status codes or ranges 100..599, e.g. 200 "
                                            "or 200-299")
            continue
        ranges.append((lo, hi))
    if not node.args:
        ctx.error(node.pos, "'status_code' needs at least one code or range, e.g. 200-299")
    if ranges:
        values["status_codes"] = (*values.get("status_codes", ()), *ranges)


def _digest(text_: str) -> str:
    if re.fullmatch(r"[0-9a-fA-F]{32}", text_):
        return text_.lower()
    raise Invalid("an MD5 digest of 32 hex digits (as printed by genhash)")


# keepalived 2.2.7's regex_options (PCRE2 option names).  vrrpd matches with Python's ``re``:
# REGEX_ACTED are emulated (caseless, multiline, dotall, extended -> re flags; firstline; utf
# decodes the body as UTF-8) or change nothing about whether a body matches (optimisation
# switches); the others are accepted with a "not acted on" warning.
REGEX_ACTED = frozenset({
    "caseless", "multiline", "dotall", "extended", "firstline", "utf", "use_offset_limit",
    "no_auto_possess", "no_dotstar_anchor", "no_start_optimize", "auto_callout",
})
REGEX_OPTIONS = REGEX_ACTED | frozenset({
    "allow_empty_class", "alt_bsux", "dollar_endonly", "dupnames", "match_unset_backref",
    "never_ucp", "never_utf", "no_auto_capture", "ucp", "ungreedy", "never_backslash_c",
    "alt_circumflex", "alt_verbnames",
})


def _regex_options(ctx: Ctx, node: Node, values: Values) -> None:
    got: list[str] = []
    for tok in node.args:
        name = tok.text.lower()
        if name not in REGEX_OPTIONS:
            ctx.invalid(tok, "regex_options", "PCRE2 option names such as caseless, "
                                              "multiline, dotall, extended")
            continue
        if name not in REGEX_ACTED:
            ctx.warn(tok.pos, f"regex option '{name}' is parsed but not acted on yet by vrrpd",
                     "vrrpd matches with Python's re module")
        got.append(name)
    values["regex_options"] = (*values.get("regex_options", ()), *got)


URL = Block("url", {
    "path": text("path"),
    "digest": value("digest", _digest),
    "status_code": _status_code,
    "virtualhost": value("virtualhost", word),
    "regex": text("regex"),
    "regex_no_match": flag("regex_no_match"),
    "regex_options": _regex_options,
    "regex_stack": not_acted(),
    "regex_min_offset": value("regex_min_offset", int_range(0, 2**31 - 1)),
    "regex_max_offset": value("regex_max_offset", int_range(0, 2**31 - 1)),
})


def _url(ctx: Ctx, node: Node, values: Values) -> None:
    got = URL.run(ctx, node, {"pos": node.pos})
    if "path" not in got:
        ctx.error(node.pos, "url block has no 'path'", "the url is ignored")
        return
    values["urls"] = (*values.get("urls", ()), Url(**got))


HTTP = Block("HTTP_GET", {
    **COMMON,
    "url": _url,
    "http_protocol": value("http_protocol", choice({"1.0": "1.0", "1.0C": "1.0C", "1.1": "1.1",
                                                    "1.0c": "1.0C"})),
    "virtualhost": value("virtualhost", word),
    "fast_recovery": flag("fast_recovery"),
    "enable_sni": flag("enable_sni"),
    "nb_get_retry": deprecated(value("retry", int_range(0, 2**31 - 1)), "use 'retry'"),
})

TCP = Block("TCP_CHECK", COMMON)
PING = Block("PING_CHECK", COMMON)


def _smtp_host(ctx: Ctx, node: Node, values: Values) -> None:
    got = Block("SMTP_CHECK host", CONNECTION).run(ctx, node)
    ctx.warn(node.pos, "'host' in SMTP_CHECK is deprecated: use one SMTP_CHECK per host with "
                       "connect_ip")
    values["hosts"] = (*values.get("hosts", ()), SmtpHost(**got))


SMTP = Block("SMTP_CHECK", {
    **COMMON,
    "helo_name": text("helo_name"),
    "host": _smtp_host,
})

_DNS_TYPES = ("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA")

DNS = Block("DNS_CHECK", {
    **COMMON,
    "type": value("type", choice({t: t for t in _DNS_TYPES}, case_sensitive=False)),
    "name": value("name", word),
})


def _hex(field: str, *, allow_x: bool = False, optional: bool = False) -> Handler:
    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        if not node.args:
            if optional:
                values["require_reply"] = True
                return
            ctx.error(node.pos, f"'{node.name}' needs a hex string, e.g. 'Ab12f 3 456'")
            return
        joined = " ".join(t.text for t in node.args)
        try:
            data, mask = hex_bytes(joined, allow_x=allow_x)
        except Invalid as exc:
            ctx.invalid(node.args[0], node.name, exc.expected)
            return
        values[field] = data
        if optional:
            values["require_reply"] = True
            values["reply_mask"] = mask

    return handle


UDP = Block("UDP_CHECK", {
    **COMMON,
    "payload": _hex("payload"),
    "require_reply": _hex("reply_pattern", allow_x=True, optional=True),
    "min_reply_length": value("min_reply_length", int_range(0, 65535)),
    "max_reply_length": value("max_reply_length", int_range(0, 65535)),
})


def _misc_user(ctx: Ctx, node: Node, values: Values) -> None:
    if not node.args:
        ctx.error(node.pos, "'user' needs a user name: user USER [GROUP]")
        return
    values["_user"] = (node.args[0].text, node.args[1].text if len(node.args) > 1 else None)


MISC = Block("MISC_CHECK", {
    **TIMERS,
    "misc_path": command("misc_path", user_allowed=False),
    "misc_timeout": value("misc_timeout", _misc_timeout),
    "misc_dynamic": flag("misc_dynamic"),
    "user": _misc_user,
    "connect_timeout": CONNECTION["connect_timeout"],
})


def _file_weight(ctx: Ctx, node: Node, values: Values) -> None:
    got = ctx.arg(node, int_range(-(2**31 - 1), 2**31 - 1), extra_ok=True)
    if got is None:
        return
    values["weight"] = got
    if len(node.args) > 1:
        if node.args[1].text == "reverse":
            values["reverse"] = True
        else:
            ctx.extra(node, 1)


FILE = Block("FILE_CHECK", {
    "track_file": value("track_file", word),
    "file": value("track_file", word),
    "dynamic": flag("dynamic"),
    "weight": _file_weight,
})

CHECKER_BLOCKS: Mapping[str, tuple[Block, type[Any]]] = {
    "TCP_CHECK": (TCP, TcpCheck),
    "HTTP_GET": (HTTP, HttpGetCheck),
    "SSL_GET": (Block("SSL_GET", HTTP.keywords), SslGetCheck),
    "SMTP_CHECK": (SMTP, SmtpCheck),
    "DNS_CHECK": (DNS, DnsCheck),
    "UDP_CHECK": (UDP, UdpCheck),
    "PING_CHECK": (PING, PingCheck),
    "ICMP_CHECK": (PING, PingCheck),
    "MISC_CHECK": (MISC, MiscCheck),
    "FILE_CHECK": (FILE, FileCheck),
}


def load_checker(ctx: Ctx, node: Node) -> Values | None:
    """Parse one checker block into raw values (``_kind`` = the keyword)."""
    block, _cls = CHECKER_BLOCKS[node.name]
    values = block.run(ctx, node, {"_kind": node.name, "pos": node.pos})
    if node.name == "MISC_CHECK" and "misc_path" not in values:
        ctx.error(node.pos, "MISC_CHECK has no 'misc_path'", "the checker is ignored")
        return None
    if node.name == "FILE_CHECK" and "track_file" not in values:
        ctx.error(node.pos, "FILE_CHECK has no 'track_file'", "the checker is ignored")
        return None
    if node.name in ("HTTP_GET", "SSL_GET") and not values.get("urls"):
        ctx.error(node.pos, f"{node.name} has no 'url {{ path ... }}' block",
                  "the checker is ignored")
        return None
    return values


# (retry, delay_before_retry) when neither the checker, real server nor virtual server set them;
# None: DNS_CHECK's delay_before_retry is its delay_loop.
_TYPE_DEFAULTS: dict[str, tuple[int, float | None]] = {
    "DNS_CHECK": (3, None), "MISC_CHECK": (0, 1.0), "HTTP_GET": (1, 3.0), "SSL_GET": (1, 3.0),
}


def build_checker(values: Values, parent: Mapping[str, Any]) -> Checker:
    """Build a checker; ``parent`` holds the real server's resolved inheritable values.

    Consumes ``values`` (the raw dict from :func:`load_checker`).
    """
    kind = values.pop("_kind")
    cls = CHECKER_BLOCKS[kind][1]
    for key in INHERITED:
        if key not in values:
            got = parent.get(key)
            if got is not None:
                values[key] = got
    retry, dbr = _TYPE_DEFAULTS.get(kind, (1, 1.0))
    if "retry" not in values:
        values["retry"] = retry
    if "delay_before_retry" not in values:
        values["delay_before_retry"] = dbr if dbr is not None else values.get("delay_loop", 60.0)
    if kind in ("HTTP_GET", "SSL_GET") and "virtualhost" not in values:
        values["virtualhost"] = parent.get("virtualhost")
    if kind == "MISC_CHECK":
        user = values.pop("_user", None)
        if user is not None and values["misc_path"].user is None:
            values["misc_path"] = dataclasses.replace(values["misc_path"], user=user[0],
                                                      group=user[1])
    checker: Checker = cls(**values)
    return checker
