"""``virtual_server_group``, ``virtual_server`` and ``real_server`` blocks."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, ip_network
from typing import Any

from vrrpd.config.blocks_checkers import (
    CHECKER_BLOCKS,
    NB_GET_RETRY_IGNORED,
    build_checker,
    load_checker,
)
from vrrpd.config.model import GlobalDefs
from vrrpd.config.model_lvs import (
    LvsMethod,
    Protocol,
    RealServer,
    SchedFlag,
    Scheduler,
    SorryServer,
    Tunnel,
    TunnelType,
    VirtualServer,
    VirtualServerGroup,
    VsgFwmark,
    VsgRange,
)
from vrrpd.config.nodes import Node, Token
from vrrpd.config.schema import (
    Block,
    Ctx,
    Handler,
    Values,
    command,
    flag,
    ignored,
    not_acted,
    value,
)
from vrrpd.config.values import Invalid, choice, int_range, ip_addr, port, seconds, word

_TIMER = seconds(0, 1e6)
_POS_TIMER = seconds(0, 1e6, allow_zero=False)
_CONNECT_TIMEOUT = seconds(0, 4294.967295, allow_zero=False)
_RETRY = int_range(0, 2**31 - 1)


def _method(field: str) -> Handler:
    """``lvs_method NAT|DR|TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]``."""
    methods = {"NAT": LvsMethod.NAT, "DR": LvsMethod.DR, "TUN": LvsMethod.TUN}

    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        got = ctx.arg(node, choice(methods), extra_ok=True)
        if got is None:
            return
        values[field] = got
        if got is not LvsMethod.TUN:
            if len(node.args) > 1:
                ctx.extra(node, 1)
            return
        tunnel: dict[str, Any] = {}
        rest = list(node.args[1:])
        i = 0
        while i < len(rest):
            key = rest[i].text
            if key == "type" and i + 1 < len(rest):
                ttype = ctx.parse(rest[i + 1], "lvs_method TUN type",
                                  choice({t.value: t for t in TunnelType}))
                if ttype is not None:
                    tunnel["type"] = ttype
                i += 2
            elif key == "port" and i + 1 < len(rest):
                p = ctx.parse(rest[i + 1], "lvs_method TUN port", int_range(1, 65535))
                if p is not None:
                    tunnel["port"] = p
                i += 2
            elif key in ("nocsum", "csum", "remcsum"):
                tunnel["checksum"] = key
                i += 1
            else:
                ctx.invalid(rest[i], "lvs_method TUN", "type ipip|gue port N|gre, then "
                                                        "nocsum|csum|remcsum")
                i += 1
        if tunnel.get("type") is TunnelType.GUE and "port" not in tunnel:
            ctx.error(node.pos, "lvs_method TUN type gue needs 'port N'")
        values[field.replace("lvs_method", "tunnel")] = Tunnel(**tunnel)

    return handle


def _sched_flag(flag_: SchedFlag) -> Handler:
    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        values["sched_flags"] = values.get("sched_flags", frozenset()) | {flag_}

    return handle


def _persistence_timeout(ctx: Ctx, node: Node, values: Values) -> None:
    if not node.args:
        values["persistence_timeout"] = 360
        return
    got = ctx.arg(node, int_range(1, 2678400))
    if got is not None:
        values["persistence_timeout"] = got


def _granularity(text_: str) -> int:
    if text_.isascii() and text_.isdigit() and 1 <= int(text_) <= 128:
        return int(text_)
    try:
        mask = IPv4Address(text_)
        return ip_network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        raise Invalid("a netmask such as 255.255.255.0 or a prefix length 1..128") from None


def _server(ctx: Ctx, node: Node, tokens: Sequence[Token], what: str,
            default_port: int) -> tuple[Any, int] | None:
    if not tokens:
        ctx.error(node.pos, f"'{what}' needs an address and an optional port")
        return None
    addr = ctx.parse(tokens[0], what, ip_addr)
    if addr is None:
        return None
    p = default_port
    if len(tokens) > 1:
        got = ctx.parse(tokens[1], f"{what} port", port)
        if got is None:
            return None
        p = got
    if len(tokens) > 2:
        ctx.extra(node, len(node.args) - len(tokens) + 2)
    return addr, p


def _sorry(ctx: Ctx, node: Node, values: Values) -> None:
    got = _server(ctx, node, node.args, "sorry_server", values.get("port", 0))
    if got is not None:
        values["sorry_address"] = got


def _real_server(ctx: Ctx, node: Node, values: Values) -> None:
    got = _server(ctx, node, node.args, "real_server", values.get("port", 0))
    if got is None:
        return
    rs: Values = {"address": got[0], "port": got[1], "pos": node.pos, "_checkers": []}
    REAL_SERVER.run(ctx, node, rs)
    values.setdefault("_real_servers", []).append(rs)


def _checker(ctx: Ctx, node: Node, values: Values) -> None:
    got = load_checker(ctx, node)
    if got is not None:
        values["_checkers"].append(got)


_SHARED: dict[str, Handler] = {
    "lvs_method": _method("lvs_method"),
    "lb_kind": _method("lvs_method"),
    "inhibit_on_failure": flag("inhibit_on_failure"),
    "alpha": flag("alpha"),
    "virtualhost": value("virtualhost", word),
    "smtp_alert": flag("smtp_alert"),
    "delay_loop": value("delay_loop", _POS_TIMER),
    "connect_timeout": value("connect_timeout", _CONNECT_TIMEOUT),
    "retry": value("retry", _RETRY),
    "nb_get_retry": ignored(NB_GET_RETRY_IGNORED),  # unknown to keepalived 2.2.7 here
    "delay_before_retry": value("delay_before_retry", _TIMER),
    "warmup": value("warmup", _TIMER),
    "snmp_name": not_acted(),
}

REAL_SERVER = Block("real_server", {
    **_SHARED,
    "weight": value("weight", int_range(0, 2**31 - 1)),
    "notify_up": command("notify_up"),
    "notify_down": command("notify_down"),
    "uthreshold": value("uthreshold", int_range(0, 2**31 - 1)),
    "lthreshold": value("lthreshold", int_range(0, 2**31 - 1)),
    **{name: _checker for name in CHECKER_BLOCKS},
    "BFD_CHECK": not_acted(),
})

_SCHEDULERS = {s.value: s for s in Scheduler}

VIRTUAL_SERVER = Block("virtual_server", {
    **_SHARED,
    "lvs_sched": value("scheduler", choice(_SCHEDULERS)),
    "lb_algo": value("scheduler", choice(_SCHEDULERS)),
    "protocol": value("protocol", choice({p.value: p for p in Protocol}, case_sensitive=False)),
    "persistence_timeout": _persistence_timeout,
    "persistence_granularity": value("persistence_granularity", _granularity),
    "persistence_engine": not_acted(value("persistence_engine", word)),
    "ha_suspend": flag("ha_suspend"),
    "omega": flag("omega"),
    "quorum": value("quorum", int_range(1, 2**32 - 1)),
    "hysteresis": value("hysteresis", int_range(0, 2**32 - 1)),
    "quorum_up": command("quorum_up"),
    "quorum_down": command("quorum_down"),
    "ip_family": value("ip_family", choice({"inet": "inet", "inet6": "inet6"})),
    "sorry_server": _sorry,
    "sorry_server_inhibit": flag("sorry_server_inhibit"),
    "sorry_server_lvs_method": _method("sorry_server_lvs_method"),
    "ops": flag("ops"),
    "flag-1": _sched_flag(SchedFlag.FLAG_1),
    "flag-2": _sched_flag(SchedFlag.FLAG_2),
    "flag-3": _sched_flag(SchedFlag.FLAG_3),
    "sh-fallback": _sched_flag(SchedFlag.FLAG_1),
    "mh-fallback": _sched_flag(SchedFlag.FLAG_1),
    "sh-port": _sched_flag(SchedFlag.FLAG_2),
    "mh-port": _sched_flag(SchedFlag.FLAG_2),
    "real_server": _real_server,
    "nat_mask": ignored("is deprecated: a keepalived 1.x setting with no effect on IPVS; it "
                        "is ignored (keepalived 2.2.7 rejects it as an unknown keyword)"),
})


def load_virtual_server(ctx: Ctx, node: Node) -> Values | None:
    """Parse ``virtual_server IP [PORT] | fwmark N | group NAME { ... }`` into raw values."""
    args = node.args
    values: Values = {"pos": node.pos}
    if not args:
        ctx.error(node.pos, "'virtual_server' needs IP [PORT], 'fwmark N' or 'group NAME'",
                  "the block is ignored")
        return None
    head = args[0].text
    if head == "fwmark":
        mark = ctx.parse(args[1], "virtual_server fwmark", int_range(1, 2**32 - 1)) \
            if len(args) > 1 else None
        if mark is None:
            if len(args) < 2:
                ctx.error(node.pos, "'virtual_server fwmark' needs a mark 1..4294967295")
            return None
        values["fwmark"] = mark
    elif head == "group":
        if len(args) < 2:
            ctx.error(node.pos, "'virtual_server group' needs a virtual_server_group name")
            return None
        values["group"] = args[1].text
    else:
        addr = ctx.parse(args[0], "virtual_server", ip_addr)
        if addr is None:
            return None
        values["address"] = addr
        if len(args) > 1:
            p = ctx.parse(args[1], "virtual_server port", port)
            if p is None:
                return None
            values["port"] = p
    if len(args) > 2:
        ctx.extra(node, 2)
    VIRTUAL_SERVER.run(ctx, node, values)
    return values


def _inherit(values: Values, parent: Values) -> Values:
    """Resolve the settings a real server inherits from its virtual server."""
    out = dict(values)
    if "lvs_method" in out:  # an own method never takes the virtual server's tunnel
        out.setdefault("tunnel", None)
    for key in ("lvs_method", "tunnel", "inhibit_on_failure", "alpha", "virtualhost",
                "delay_loop", "connect_timeout", "retry", "delay_before_retry", "warmup"):
        if key not in out and key in parent:
            out[key] = parent[key]
    return out


def _ident(values: Values) -> str:
    if "group" in values:
        return f"group {values['group']}"
    if "fwmark" in values:
        return f"fwmark {values['fwmark']}"
    return f"{values.get('address')} {values.get('port', 0)}"


def build_virtual_server(ctx: Ctx, values: Values, gdefs: GlobalDefs) -> VirtualServer | None:
    values = dict(values)
    pos = values["pos"]
    rs_raw: list[Values] = values.pop("_real_servers", [])
    if "fwmark" not in values and "group" not in values and "port" not in values \
            and "persistence_timeout" not in values:
        ctx.warn(pos, f"virtual_server {values.get('address')}: port 0 is only valid for "
                      f"persistent services", "made persistent (360 s), as keepalived")
        values["persistence_timeout"] = 360
    if "protocol" not in values and "fwmark" not in values:
        ident = values.get("address", values.get("group"))
        ctx.warn(pos, f"virtual_server {ident}: no protocol set - defaulting to UDP (as "
                      f"keepalived)", "add 'protocol TCP' if that is what you meant")
        values["protocol"] = Protocol.UDP
    if "scheduler" not in values:
        ctx.warn(pos, f"virtual_server {_ident(values)}: no scheduler set (lvs_sched/lb_algo)",
                 "using 'wlc', as keepalived (which counts this as a config error)")
    if "lvs_method" not in values:
        ctx.warn(pos, f"virtual_server {_ident(values)}: no forwarding method set "
                      f"(lvs_method/lb_kind)", "using NAT, as keepalived (which counts this as a "
                                               "config error)")
    sorry_addr = values.pop("sorry_address", None)
    sorry_inhibit = bool(values.pop("sorry_server_inhibit", False))
    sorry_method = values.pop("sorry_server_lvs_method", None)
    sorry_tunnel = values.pop("sorry_server_tunnel", None)
    if sorry_addr is not None:
        values["sorry_server"] = SorryServer(
            address=sorry_addr[0], port=sorry_addr[1],
            lvs_method=sorry_method or values.get("lvs_method", LvsMethod.NAT),
            tunnel=sorry_tunnel if sorry_method else values.get("tunnel"), inhibit=sorry_inhibit)
    if "smtp_alert" not in values:
        default = gdefs.smtp_alert_checker if gdefs.smtp_alert_checker is not None \
            else gdefs.smtp_alert
        values["smtp_alert"] = bool(default)
    real_servers = []
    family = values["address"].version if "address" in values else None
    for rs in rs_raw:
        built = _build_real_server(rs, values, gdefs)
        if family is not None and built.address.version != family \
                and built.lvs_method is not LvsMethod.TUN:
            ctx.error(built.pos, f"real_server {built.address}: address family does not match "
                                 f"the virtual server's", "the real server is skipped, as "
                                                          "keepalived (only TUN may mix)")
            continue
        real_servers.append(built)
    if not real_servers:
        ctx.error(pos, f"virtual_server {_ident(values)} has no real servers",
                  "it is ignored, as keepalived (a sorry_server alone is not enough)")
        return None
    values["real_servers"] = tuple(real_servers)
    return VirtualServer(**values)


def _build_real_server(raw: Values, vs: Values, gdefs: GlobalDefs) -> RealServer:
    rs = _inherit(raw, vs)
    checkers_raw: list[Values] = rs.pop("_checkers")
    if "smtp_alert" not in rs:
        default = gdefs.smtp_alert_checker if gdefs.smtp_alert_checker is not None \
            else gdefs.smtp_alert
        rs["smtp_alert"] = True if default is None else default
    rs["checkers"] = tuple(build_checker(c, rs) for c in checkers_raw)
    return RealServer(**rs)


def _vsg_line(ctx: Ctx, node: Node, values: Values) -> None:
    tokens = (node.keyword, *node.args)
    if node.name == "fwmark":
        if len(tokens) < 2:
            ctx.error(node.pos, "'fwmark' in virtual_server_group needs a mark")
            return
        mark = ctx.parse(tokens[1], "fwmark", int_range(1, 2**32 - 1))
        fam = None
        if len(tokens) > 2:
            fam = ctx.parse(tokens[2], "fwmark family", choice({"inet": "inet",
                                                                 "inet6": "inet6"}))
        if mark is not None:
            values["fwmarks"] = (*values.get("fwmarks", ()), VsgFwmark(fwmark=mark, family=fam))
        return
    rng = _vsg_range(ctx, tokens[0])
    if rng is None:
        return
    p = 0
    if len(tokens) > 1:
        got = ctx.parse(tokens[1], "virtual_server_group port", port)
        if got is None:
            return
        p = got
    if len(tokens) > 2:
        ctx.extra(node, 1)
    values["ranges"] = (*values.get("ranges", ()), VsgRange(first=rng[0], last=rng[1], port=p))


def _vsg_range(ctx: Ctx, tok: Token) -> tuple[Any, Any] | None:
    expected = "IP, IP-LAST (last octet or full address) or IP/PREFIX"
    txt = tok.text
    try:
        if "/" in txt:
            net = ip_network(txt, strict=False)
            return net[0], net[-1]
        if "-" in txt:
            first_s, last_s = txt.split("-", 1)
            first = ip_addr(first_s)
            if "." in last_s or ":" in last_s:
                last = ip_addr(last_s)
            else:
                if first.version == 4:
                    head = str(first).rsplit(".", 1)[0]
                    last = ip_addr(f"{head}.{int(last_s)}")
                else:
                    head = str(first.exploded).rsplit(":", 1)[0]
                    last = ip_addr(f"{head}:{last_s}")
            if last.version != first.version or int(last) < int(first):
                raise Invalid(expected)
            return first, last
        addr = ip_addr(txt)
        return addr, addr
    except (Invalid, ValueError):
        ctx.invalid(tok, "virtual_server_group", expected)
        return None


def load_vs_group(ctx: Ctx, node: Node) -> VirtualServerGroup | None:
    if not node.args:
        ctx.error(node.pos, "'virtual_server_group' needs a name", "the block is ignored")
        return None
    values: Values = {}
    if node.children is None:
        ctx.error(node.pos, "'virtual_server_group' expects a '{ ... }' block")
        return None
    for child in node.children:
        _vsg_line(ctx, child, values)
    return VirtualServerGroup(name=node.args[0].text, pos=node.pos, **values)
