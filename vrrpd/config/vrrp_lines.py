"""Parsers for the one-item-per-line lists inside VRRP blocks.

``virtual_ipaddress``, ``virtual_routes``, ``unicast_peer`` and the
``track_interface|track_script|track_file`` lists: each line is a child node
whose keyword is the first word (an address, a name).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from vrrpd.config.model_common import IPInterface
from vrrpd.config.model_vrrp import (
    TrackFileRef,
    TrackInterface,
    TrackScriptRef,
    UnicastPeer,
    VirtualIpAddress,
    VirtualRoute,
)
from vrrpd.config.nodes import Node, Token
from vrrpd.config.schema import Ctx
from vrrpd.config.values import Invalid, int_range, ip_addr, ip_iface, word

_SCOPES = ("site", "link", "host", "nowhere", "global")


def _options(ctx: Ctx, node: Node, tokens: Sequence[Token], what: str,
             known: dict[str, Any], flags: Sequence[str] = ()) -> dict[str, Any] | None:
    """``key value`` pairs after the first word.  Unknown keys -> WARNING."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        key = tokens[i].text
        if key in flags:
            out[key] = True
            i += 1
            continue
        parser = known.get(key)
        if parser is None:
            ctx.warn(tokens[i].pos, f"unknown option '{key}' in {what}; it is ignored",
                     f"known: {', '.join([*known, *flags])}")
            i += 1
            continue
        if i + 1 >= len(tokens):
            ctx.error(tokens[i].pos, f"'{key}' in {what} needs a value")
            return None
        got = ctx.parse(tokens[i + 1], key, parser)
        if got is None:
            return None
        out[key] = got
        i += 2
    return out


def _scope(text: str) -> str:
    if text in _SCOPES or (text.isascii() and text.isdigit()):
        return text
    raise Invalid("one of " + "|".join(_SCOPES))


def _vip_address(ctx: Ctx, tok: Token) -> IPInterface | None:
    """keepalived: a bad prefix length is reported and the host prefix used instead."""
    addr_text, slash, prefix = tok.text.partition("/")
    if slash:
        host = ctx.parse(Token(addr_text, tok.pos, tok.quoted), "virtual_ipaddress", ip_addr)
        if host is None:
            return None
        maxlen = 32 if host.version == 4 else 128
        if not (prefix.isascii() and prefix.isdigit() and int(prefix) <= maxlen):
            ctx.error(tok.pos, f"invalid value for 'virtual_ipaddress': expected a prefix "
                               f"length 0..{maxlen}, found '{tok.text}'",
                      f"/{maxlen} is used, as keepalived")
            return ip_iface(addr_text)
    return ctx.parse(tok, "virtual_ipaddress", ip_iface)


def parse_vip(ctx: Ctx, node: Node, tokens: Sequence[Token]) -> VirtualIpAddress | None:
    """``ADDR[/PREFIX] [brd IP] [dev IF] [scope S] [label L] [no_track] ...``."""
    address = _vip_address(ctx, tokens[0])
    if address is None:
        return None
    opts = _options(ctx, node, tokens[1:], "virtual_ipaddress",
                    {"brd": ip_addr, "broadcast": ip_addr, "dev": word, "scope": _scope,
                     "label": word, "preferred_lft": word},
                    flags=("no_track", "home", "-nodad", "nodad", "noprefixroute"))
    if opts is None:
        return None
    for unsupported in ("preferred_lft", "home", "-nodad", "nodad", "noprefixroute", "no_track"):
        if unsupported in opts:
            ctx.not_acted(node, f"virtual_ipaddress option {unsupported}")
    brd = opts.get("brd", opts.get("broadcast"))
    return VirtualIpAddress(address=address, brd=brd, dev=opts.get("dev"),
                            scope=opts.get("scope"), label=opts.get("label"),
                            no_track=bool(opts.get("no_track")), pos=tokens[0].pos)


def _network(text: str) -> IPv4Network | IPv6Network:
    if text == "default":
        return IPv4Network("0.0.0.0/0")
    try:
        return ip_network(text, strict=False)
    except ValueError:
        raise Invalid("a destination network, e.g. 10.1.0.0/16, or 'default'") from None


_ROUTE_TYPES = ("blackhole", "unreachable", "prohibit", "throw", "unicast", "local",
                "broadcast", "multicast")


def parse_route(ctx: Ctx, node: Node, tokens: Sequence[Token]) -> VirtualRoute | None:
    """``[src IP] [TYPE] DEST [via|gw IP] [dev IF] [scope S] [table T] [metric N] ...``."""
    toks = list(tokens)
    src = None
    if toks and toks[0].text == "src":
        if len(toks) < 2:
            ctx.error(toks[0].pos, "'src' in virtual_routes needs an address")
            return None
        src = ctx.parse(toks[1], "src", ip_addr)
        if src is None:
            return None
        toks = toks[2:]
    rtype = None
    if toks and toks[0].text in _ROUTE_TYPES:
        rtype = toks[0].text
        toks = toks[1:]
    if not toks:
        ctx.error(node.pos, "virtual_routes line needs a destination")
        return None
    to = ctx.parse(toks[0], "virtual_routes", _network)
    if to is None:
        return None
    keyed: dict[str, Any] = {"via": ip_addr, "gw": ip_addr, "src": ip_addr, "dev": word,
                             "scope": _scope, "table": word, "metric": int_range(0, 2**32 - 1)}
    options: list[str] = []
    fields: dict[str, Any] = {}
    i = 1
    while i < len(toks):
        key = toks[i].text
        if key in keyed and i + 1 < len(toks):
            got = ctx.parse(toks[i + 1], key, keyed[key])
            if got is None:
                return None
            fields["via" if key == "gw" else key] = got
            i += 2
        else:
            options.append(key)
            i += 1
    if src is not None:
        fields.setdefault("src", src)
    return VirtualRoute(to=to, type=rtype, options=tuple(options), pos=toks[0].pos, **fields)


def parse_peer(ctx: Ctx, node: Node, tokens: Sequence[Token]) -> UnicastPeer | None:
    address = ctx.parse(tokens[0], "unicast_peer", ip_addr)
    if address is None:
        return None
    if len(tokens) > 1:
        ctx.not_acted(node, f"unicast_peer option {tokens[1].text}")
    return UnicastPeer(address=address, pos=tokens[0].pos)


def _weighted(ctx: Ctx, node: Node, tokens: Sequence[Token], what: str,
              lo: int, hi: int) -> tuple[int | None, bool] | None:
    """``NAME [weight N [reverse]]`` -> (weight or None, reverse)."""
    rest = tokens[1:]
    if not rest:
        return None, False
    if rest[0].text != "weight":
        ctx.error(rest[0].pos, f"invalid value in {what}: expected NAME [weight N [reverse]], "
                               f"found '{rest[0].text}'")
        return None
    if len(rest) < 2:
        ctx.error(rest[0].pos, f"'weight' in {what} needs an integer {lo}..{hi}")
        return None
    weight = ctx.parse(rest[1], f"{what} weight", int_range(lo, hi))
    if weight is None:
        return None
    reverse = False
    if len(rest) > 2:
        if rest[2].text == "reverse":
            reverse = True
        else:
            ctx.warn(rest[2].pos, f"extra arguments in {what} ignored: '{rest[2].text}'")
    return weight, reverse


def parse_track_interface(ctx: Ctx, node: Node,
                          tokens: Sequence[Token]) -> TrackInterface | None:
    got = _weighted(ctx, node, tokens, "track_interface", -253, 253)
    if got is None:
        return None
    return TrackInterface(pos=tokens[0].pos, name=tokens[0].text, weight=got[0] or 0,
                          reverse=got[1])


def parse_track_script(ctx: Ctx, node: Node, tokens: Sequence[Token]) -> TrackScriptRef | None:
    got = _weighted(ctx, node, tokens, "track_script", -253, 253)
    if got is None:
        return None
    return TrackScriptRef(pos=tokens[0].pos, name=tokens[0].text, weight=got[0], reverse=got[1])


def parse_track_file(ctx: Ctx, node: Node, tokens: Sequence[Token]) -> TrackFileRef | None:
    got = _weighted(ctx, node, tokens, "track_file", -254, 254)
    if got is None:
        return None
    return TrackFileRef(pos=tokens[0].pos, name=tokens[0].text, weight=got[0], reverse=got[1])
