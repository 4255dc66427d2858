"""``vrrp_instance NAME { ... }``: keyword table and build with keepalived's defaults."""

from __future__ import annotations

from vrrpd.config.model import GlobalDefs
from vrrpd.config.model_vrrp import Authentication, AuthType, InitialState, VrrpInstance
from vrrpd.config.nodes import Node
from vrrpd.config.schema import (
    Block,
    Ctx,
    Values,
    command,
    deprecated,
    flag,
    known_not_acted,
    line_list,
    not_acted,
    value,
)
from vrrpd.config.values import choice, int_range, ip_addr, seconds, word
from vrrpd.config.vrrp_lines import (
    parse_peer,
    parse_route,
    parse_track_file,
    parse_track_interface,
    parse_track_script,
    parse_vip,
)

_NOT_ACTED = (
    "check_unicast_src", "down_timer_adverts", "garp_extra_if", "gna_interval",
    "higher_prio_send_advert", "kernel_rx_buf_size", "linkbeat_use_polling",
    "lower_prio_no_advert", "mcast_dst_ip", "native_ipv6", "notify_deleted",
    "notify_priority_changes", "old_unicast_checksum", "promote_secondaries", "track_bfd",
    "track_process", "track_src_ip", "unicast_fault_no_peer", "unicast_ttl", "use_ipvlan",
    "use_vmac_addr", "virtual_rules", "vrf", "garp_group", "vmac_xmit_base",
)


def _state(ctx: Ctx, node: Node, values: Values) -> None:
    if not node.args:
        ctx.error(node.pos, "'state' needs a value: expected MASTER|BACKUP")
        return
    tok = node.args[0]
    if tok.text in ("MASTER", "BACKUP"):
        values["state"] = InitialState(tok.text)
    else:
        ctx.error(tok.pos, f"invalid value for 'state': expected MASTER|BACKUP (upper case), "
                           f"found '{tok.text}'", "the instance starts as BACKUP")
    if len(node.args) > 1:
        ctx.extra(node, 1)


def _interface(ctx: Ctx, node: Node, values: Values) -> None:
    got = ctx.arg(node, word)
    if got is not None:
        values["interface"] = got
        values["interface_pos"] = node.pos


def _priority(ctx: Ctx, node: Node, values: Values) -> None:
    got = ctx.arg(node, int_range(1, 255))
    # keepalived: an invalid priority falls back to 100 even with `state MASTER`.
    values["priority"] = 100 if got is None else got


def _advert_int(ctx: Ctx, node: Node, values: Values) -> None:
    got = ctx.arg(node, seconds(0.01, 255))
    if got is not None:
        values["advert_int"] = got


def _auth_type(ctx: Ctx, node: Node, values: Values) -> None:
    got = ctx.arg(node, choice({"PASS": AuthType.PASS, "AH": AuthType.AH}))
    if got is AuthType.AH:
        ctx.not_acted(node, "auth_type AH")
    if got is not None:
        values["auth_type"] = got


def _auth_pass(ctx: Ctx, node: Node, values: Values) -> None:
    got = ctx.arg(node, word)
    if got is None:
        return
    if len(got.encode()) > 8:
        ctx.warn(node.args[0].pos, "auth_pass is longer than 8 bytes; only the first 8 are "
                                   "used (as keepalived)")
    values["auth_pass"] = got


AUTHENTICATION = Block("authentication", {"auth_type": _auth_type, "auth_pass": _auth_pass})


def _authentication(ctx: Ctx, node: Node, values: Values) -> None:
    got = AUTHENTICATION.run(ctx, node)
    if "auth_pass" in got and "auth_type" not in got:
        ctx.warn(node.pos, "authentication has auth_pass but no auth_type; no authentication "
                           "is used")
    values["authentication"] = Authentication(
        auth_type=got.get("auth_type", AuthType.NONE),
        auth_pass=got.get("auth_pass", "") if "auth_type" in got else "")


def _use_vmac(ctx: Ctx, node: Node, values: Values) -> None:
    values["use_vmac"] = True
    if node.args:
        values["vmac_name"] = node.args[0].text
    ctx.not_acted(node)


def _debug(ctx: Ctx, node: Node, values: Values) -> None:
    if node.args:
        got = ctx.arg(node, int_range(0, 4))
        if got is not None:
            values["debug"] = got
    else:
        values["debug"] = 1
        ctx.warn(node.pos, "'debug' without a level is deprecated (keepalived 1.x): keepalived "
                           "2.2.7 aborts on it; write 'debug 1'")
    ctx.not_acted(node)


def _virtual_routes(ctx: Ctx, node: Node, values: Values) -> None:
    line_list("virtual_routes", parse_route)(ctx, node, values)
    ctx.not_acted(node)


INSTANCE = Block("vrrp_instance", {
    **known_not_acted(_NOT_ACTED),
    "state": _state,
    "interface": _interface,
    "virtual_router_id": value("virtual_router_id", int_range(1, 255)),
    "priority": _priority,
    "advert_int": _advert_int,
    "version": value("version", int_range(2, 3)),
    "authentication": _authentication,
    "virtual_ipaddress": line_list("virtual_ipaddresses", parse_vip),
    "virtual_ipaddress_excluded": line_list("virtual_ipaddresses_excluded", parse_vip),
    "virtual_routes": _virtual_routes,
    "track_interface": line_list("track_interfaces", parse_track_interface),
    "track_script": line_list("track_scripts", parse_track_script),
    "track_file": line_list("track_files", parse_track_file),
    "dont_track_primary": flag("dont_track_primary"),
    "unicast_src_ip": value("unicast_src_ip", ip_addr),
    "unicast_peer": line_list("unicast_peers", parse_peer),
    "mcast_src_ip": value("mcast_src_ip", ip_addr),
    "garp_master_delay": value("garp_master_delay", seconds(0, 86400)),
    "garp_master_repeat": value("garp_master_repeat", int_range(1, 255)),
    "garp_master_refresh": value("garp_master_refresh", seconds(0, 86400)),
    "garp_master_refresh_repeat": value("garp_master_refresh_repeat", int_range(1, 255)),
    "garp_lower_prio_delay": value("garp_lower_prio_delay", seconds(0, 86400)),
    "garp_lower_prio_repeat": value("garp_lower_prio_repeat", int_range(0, 255)),
    "garp_interval": value("garp_interval", seconds(0, 1)),
    "notify_master": command("notify_master"),
    "notify_backup": command("notify_backup"),
    "notify_fault": command("notify_fault"),
    "notify_stop": command("notify_stop"),
    "notify": command("notify"),
    "notify_master_rx_lower_pri": command("notify_master_rx_lower_pri"),
    "smtp_alert": flag("smtp_alert"),
    "nopreempt": flag("nopreempt"),
    "preempt": flag("nopreempt", on=False),
    "preempt_delay": value("preempt_delay", seconds(0, 1000)),
    "use_vmac": _use_vmac,
    "strict_mode": flag("strict_mode"),
    "accept": flag("accept"),
    "no_accept": flag("accept", on=False),
    "skip_check_adv_addr": flag("skip_check_adv_addr"),
    "debug": _debug,
    "lvs_sync_daemon_interface": deprecated(
        not_acted(value("lvs_sync_daemon_interface", word)),
        "use 'lvs_sync_daemon' in global_defs"),
})


def load_instance(ctx: Ctx, node: Node) -> Values | None:
    """Parse one ``vrrp_instance``; returns its raw values (built later) or None."""
    if not node.args:
        ctx.error(node.pos, "'vrrp_instance' needs a name", "the block is ignored")
        return None
    if len(node.args) > 1:
        ctx.extra(node, 1)
    values: Values = {"name": node.args[0].text, "pos": node.pos}
    INSTANCE.run(ctx, node, values)
    return values


def vrrp_smtp_alert(gdefs: GlobalDefs) -> bool:
    """The smtp_alert of an instance / sync group that does not set its own."""
    if gdefs.smtp_alert_vrrp is not None:
        return gdefs.smtp_alert_vrrp
    return bool(gdefs.smtp_alert)


def build_instance(ctx: Ctx, values: Values, gdefs: GlobalDefs) -> VrrpInstance | None:
    """Apply keepalived's defaults; None (with an ERROR) when the instance cannot exist."""
    pos = values["pos"]
    name = values["name"]
    if "virtual_router_id" not in values:
        ctx.error(pos, f"vrrp_instance {name}: the virtual router id must be set "
                       f"(virtual_router_id 1..255)", "the instance is ignored")
        return None
    if "interface" not in values:  # default_interface does not apply (keepalived 2.2.7)
        ctx.error(pos, f"vrrp_instance {name}: no 'interface' given",
                  "the instance is ignored, as keepalived (default_interface is only for "
                  "static addresses)")
        return None
    vips = values.get("virtual_ipaddresses", ())
    if vips:
        family = vips[0].address.version
        kept = tuple(v for v in vips if v.address.version == family)
        for vip in vips:
            if vip.address.version != family:
                ctx.error(vip.pos, f"vrrp_instance {name}: address family of {vip.address.ip} "
                                   f"does not match the instance's first VIP (IPv{family})",
                          "it is ignored, as keepalived")
        values["virtual_ipaddresses"] = kept
    if not values.get("virtual_ipaddresses"):
        ctx.warn(pos, f"vrrp_instance {name}: no virtual_ipaddress specified; at least one is "
                      f"sensible")
    if "priority" not in values:
        state = values.get("state", InitialState.BACKUP)
        values["priority"] = 255 if state is InitialState.MASTER else 100
    vips = values.get("virtual_ipaddresses", ())
    if "version" not in values:  # keepalived: IPv6 instances use VRRPv3
        values["version"] = 3 if vips and vips[0].address.version == 6 else gdefs.vrrp_version
    if values["version"] == 2 and values.get("advert_int", 1.0) % 1:
        rounded = float(max(1, round(values["advert_int"])))
        ctx.warn(pos, f"vrrp_instance {name}: VRRPv2 advert_int must be whole seconds; "
                      f"{values['advert_int']:g} is rounded to {rounded:g}, as keepalived")
        values["advert_int"] = rounded
    values.setdefault("garp_master_delay", gdefs.vrrp_garp_master_delay)
    values.setdefault("garp_master_repeat", gdefs.vrrp_garp_master_repeat)
    values.setdefault("garp_master_refresh", gdefs.vrrp_garp_master_refresh)
    values.setdefault("garp_master_refresh_repeat", gdefs.vrrp_garp_master_refresh_repeat)
    values.setdefault("garp_interval", gdefs.vrrp_garp_interval)
    values.setdefault("garp_lower_prio_delay",
                      gdefs.vrrp_garp_lower_prio_delay
                      if gdefs.vrrp_garp_lower_prio_delay is not None
                      else values["garp_master_delay"])
    values.setdefault("garp_lower_prio_repeat",
                      gdefs.vrrp_garp_lower_prio_repeat
                      if gdefs.vrrp_garp_lower_prio_repeat is not None
                      else values["garp_master_repeat"])
    values.setdefault("skip_check_adv_addr", gdefs.vrrp_skip_check_adv_addr)
    if "smtp_alert" not in values:  # keepalived: own, else smtp_alert_vrrp, else smtp_alert
        values["smtp_alert"] = vrrp_smtp_alert(gdefs)
    strict = bool(values.get("strict_mode")) or gdefs.vrrp_strict
    values["strict_mode"] = strict
    if "accept" not in values or values["accept"] is None:
        values["accept"] = not strict
    if strict and values.get("authentication", Authentication()).auth_type is not AuthType.NONE:
        ctx.warn(pos, f"vrrp_instance {name}: strict mode does not support authentication",
                 "it is ignored, as keepalived")
        values["authentication"] = Authentication()
    if strict and values.get("state") is InitialState.MASTER and values["priority"] != 255:
        ctx.error(pos, f"vrrp_instance {name}: in strict mode 'state MASTER' needs priority 255 "
                       f"(the address owner)", "the instance starts as BACKUP, as keepalived")
        values["state"] = InitialState.BACKUP
    if values.get("nopreempt") and values.get("state") is InitialState.MASTER \
            and values["priority"] != 255:
        ctx.warn(pos, f"vrrp_instance {name}: nopreempt will not work with 'state MASTER'",
                 "nopreempt is cleared, as keepalived; use 'state BACKUP' on every node")
        values["nopreempt"] = False
    if values.get("nopreempt") and values["priority"] == 255:
        ctx.warn(pos, f"vrrp_instance {name}: nopreempt is incompatible with priority 255 "
                      f"(the address owner always preempts)", "nopreempt is reset, as keepalived")
        values["nopreempt"] = False
    return VrrpInstance(**values)

