"""``global_defs { ... }`` and the top-level ``SSL { ... }`` block."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from vrrpd.config.model import FlushOnStop, GlobalDefs, LvsSyncDaemon, LvsTimeouts, SslConfig
from vrrpd.config.nodes import Node, Token
from vrrpd.config.schema import (
    Block,
    Ctx,
    Values,
    command,
    flag,
    known_not_acted,
    line_list,
    not_acted,
    text,
    value,
)
from vrrpd.config.values import (
    Invalid,
    int_range,
    ip_addr,
    ipv4_addr,
    ipv6_addr,
    port,
    seconds,
    word,
)

# keepalived 2.2.7 global_defs keywords vrrpd recognises but does not implement.
_NOT_ACTED = (
    "bfd_cpu_affinity", "bfd_no_swap", "bfd_priority", "bfd_process_name", "bfd_rlimit_rttime",
    "bfd_rt_priority", "checker_cpu_affinity", "checker_no_swap", "checker_process_name",
    "checker_rlimit_rttime", "checker_rt_priority", "child_wait_time", "config_save_dir",
    "data_use_instance", "dbus_service_name", "disable_local_igmp", "dynamic_interfaces",
    "enable_snmp_rfc", "enable_snmp_rfcv2", "enable_snmp_rfcv3", "fifo_write_vrrp_states_on_reload",
    "include_check", "instance", "linkbeat_use_polling", "log_unknown_vrids",
    "lvs_netlink_cmd_rcv_bufs", "lvs_netlink_cmd_rcv_bufs_force", "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force", "lvs_notify_fifo_script", "max_auto_priority",
    "min_auto_priority_delay", "namespace_with_ipsets", "net_namespace", "net_namespace_ipvs",
    "nftables", "nftables_counters", "nftables_ifindex", "nftables_ipvs", "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark", "nftables_priority",
    "notify_fifo_script", "process_monitor_rcv_bufs", "process_monitor_rcv_bufs_force",
    "process_name", "process_names", "random_seed", "reload_check_config", "reload_file",
    "reload_repeat", "reload_time_file", "rs_init_notifies", "shutdown_script",
    "shutdown_script_timeout", "snmp_socket", "startup_script", "startup_script_timeout",
    "tmp_config_directory", "umask", "use_pid_dir", "vmac_addr_prefix", "vmac_prefix",
    "vrrp_cpu_affinity", "vrrp_down_timer_adverts", "vrrp_garp_extra_if",
    "vrrp_higher_prio_send_advert", "vrrp_ipsets", "vrrp_iptables", "vrrp_lower_prio_no_advert",
    "vrrp_min_garp", "vrrp_netlink_cmd_rcv_bufs", "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs", "vrrp_netlink_monitor_rcv_bufs_force", "vrrp_no_swap",
    "vrrp_notify_fifo_script", "vrrp_notify_priority_changes", "vrrp_process_name",
    "vrrp_rlimit_rttime", "vrrp_rt_priority", "vrrp_rx_bufs_multiplier", "vrrp_rx_bufs_policy",
    "vrrp_startup_delay", "checker_log_all_failures", "lvs_sync_daemon_interface",
)


def _email(ctx: Ctx, node: Node, tokens: Sequence[Token]) -> str | None:
    if len(tokens) > 1:
        ctx.extra(node, 0)
    return tokens[0].text


def _smtp_server(ctx: Ctx, node: Node, values: Values) -> None:
    if not node.args:
        ctx.error(node.pos, "'smtp_server' needs a value: expected an address or host name "
                            "and an optional port")
        return
    host = node.args[0].text
    try:
        values["smtp_server"] = ip_addr(host)
    except Invalid:
        values["smtp_server_name"] = host
    if len(node.args) > 1:
        p = ctx.parse(node.args[1], "smtp_server", port)
        if p is not None:
            values["smtp_port"] = p
    if len(node.args) > 2:
        ctx.extra(node, 2)


def _script_user(ctx: Ctx, node: Node, values: Values) -> None:
    if not node.args:
        ctx.error(node.pos, "'script_user' needs a user name: script_user USER [GROUP]")
        return
    values["script_user"] = node.args[0].text
    if len(node.args) > 1:
        values["script_group"] = node.args[1].text
    if len(node.args) > 2:
        ctx.extra(node, 2)


def _lvs_timeouts(ctx: Ctx, node: Node, values: Values) -> None:
    got: dict[str, int] = {}
    args = list(node.args)
    i = 0
    while i < len(args):
        key = args[i].text
        if key not in ("tcp", "tcpfin", "udp"):
            ctx.error(args[i].pos, f"invalid value for 'lvs_timeouts': expected tcp|tcpfin|udp "
                                   f"SECONDS, found '{key}'")
            i += 1
            continue
        if i + 1 >= len(args):
            ctx.error(args[i].pos, f"'lvs_timeouts {key}' needs a number of seconds")
            break
        secs = ctx.parse(args[i + 1], f"lvs_timeouts {key}", int_range(0, 86400 * 31))
        if secs is not None:
            got[key] = secs
        i += 2
    old = values.get("lvs_timeouts", LvsTimeouts())
    values["lvs_timeouts"] = dataclasses.replace(old, **got)


def _lvs_sync_daemon(ctx: Ctx, node: Node, values: Values) -> None:
    args = list(node.args)
    if len(args) < 1:
        ctx.error(node.pos, "'lvs_sync_daemon' needs INTERFACE [inst] VRRP_INSTANCE [id N] "
                            "[maxlen N] [port N] [ttl N] [group IP]")
        return
    interface = args[0].text
    rest = args[1:]
    instance = ""
    if rest and rest[0].text == "inst":
        rest = rest[1:]
    if rest and rest[0].text not in ("id", "maxlen", "port", "ttl", "group"):
        instance = rest[0].text
        rest = rest[1:]
    opts: dict[str, Any] = {}
    parsers: dict[str, Any] = {"id": int_range(0, 255), "maxlen": int_range(1, 65507),
                               "port": int_range(1, 65535), "ttl": int_range(1, 255),
                               "group": ip_addr}
    i = 0
    while i < len(rest):
        key = rest[i].text
        if key not in parsers:
            ctx.error(rest[i].pos, f"invalid value for 'lvs_sync_daemon': expected one of "
                                   f"id|maxlen|port|ttl|group, found '{key}'")
            i += 1
            continue
        if i + 1 >= len(rest):
            ctx.error(rest[i].pos, f"'lvs_sync_daemon {key}' needs a value")
            break
        got = ctx.parse(rest[i + 1], f"lvs_sync_daemon {key}", parsers[key])
        if got is not None:
            opts[key] = got
        i += 2
    values["lvs_sync_daemon"] = LvsSyncDaemon(interface=interface, instance=instance, **opts)


def _flush_on_stop(ctx: Ctx, node: Node, values: Values) -> None:
    if not node.args:
        values["lvs_flush_on_stop"] = FlushOnStop.ALL
        return
    arg = node.args[0].text
    if arg == "VS":
        values["lvs_flush_on_stop"] = FlushOnStop.VS
    else:
        ctx.invalid(node.args[0], "lvs_flush_on_stop", "nothing or VS")


GLOBAL_DEFS = Block("global_defs", {
    **known_not_acted(_NOT_ACTED),
    "notification_email": line_list("notification_email", _email),
    "notification_email_from": value("notification_email_from", word),
    "smtp_server": _smtp_server,
    "smtp_helo_name": value("smtp_helo_name", word),
    "smtp_connect_timeout": value("smtp_connect_timeout", seconds(allow_zero=False)),
    "smtp_alert": flag("smtp_alert"),
    "smtp_alert_vrrp": flag("smtp_alert_vrrp"),
    "smtp_alert_checker": flag("smtp_alert_checker"),
    "router_id": text("router_id"),
    "no_email_faults": flag("no_email_faults"),
    "no_checker_emails": flag("no_checker_emails"),
    "script_user": _script_user,
    "enable_script_security": flag("enable_script_security"),
    "default_interface": value("default_interface", word),
    "vrrp_garp_master_delay": value("vrrp_garp_master_delay", seconds(0, 86400)),
    "vrrp_garp_master_repeat": value("vrrp_garp_master_repeat", int_range(1, 255)),
    "vrrp_garp_master_refresh": value("vrrp_garp_master_refresh", seconds(0, 86400)),
    "vrrp_garp_master_refresh_repeat": value("vrrp_garp_master_refresh_repeat",
                                             int_range(1, 255)),
    "vrrp_garp_lower_prio_delay": value("vrrp_garp_lower_prio_delay", seconds(0, 86400)),
    "vrrp_garp_lower_prio_repeat": value("vrrp_garp_lower_prio_repeat", int_range(0, 255)),
    "vrrp_garp_interval": value("vrrp_garp_interval", seconds(0, 1)),
    "vrrp_gna_interval": not_acted(value("vrrp_gna_interval", seconds(0, 1))),
    "vrrp_version": value("vrrp_version", int_range(2, 3)),
    "vrrp_mcast_group4": value("vrrp_mcast_group4", ipv4_addr),
    "vrrp_mcast_group6": not_acted(value("vrrp_mcast_group6", ipv6_addr)),
    "vrrp_strict": flag("vrrp_strict"),
    "vrrp_skip_check_adv_addr": flag("vrrp_skip_check_adv_addr"),
    "vrrp_check_unicast_src": flag("vrrp_check_unicast_src"),
    "vrrp_priority": not_acted(value("vrrp_priority", int_range(-20, 19))),
    "checker_priority": not_acted(value("checker_priority", int_range(-20, 19))),
    "lvs_flush": flag("lvs_flush"),
    "lvs_flush_on_stop": _flush_on_stop,
    "lvs_timeouts": _lvs_timeouts,
    "lvs_sync_daemon": _lvs_sync_daemon,
    "enable_traps": not_acted(flag("enable_traps")),
    "enable_snmp_vrrp": not_acted(flag("enable_snmp_vrrp")),
    "enable_snmp_keepalived": not_acted(flag("enable_snmp_vrrp")),
    "enable_snmp_checker": not_acted(flag("enable_snmp_checker")),
    "enable_dbus": not_acted(flag("enable_dbus")),
    "notify_fifo": command("notify_fifo"),
    "vrrp_notify_fifo": command("vrrp_notify_fifo"),
    "lvs_notify_fifo": command("lvs_notify_fifo"),
})


def load_global_defs(ctx: Ctx, node: Node, values: Values) -> None:
    """Merge one ``global_defs`` block into ``values`` (several blocks accumulate)."""
    GLOBAL_DEFS.run(ctx, node, values)


def build_global_defs(values: Values) -> GlobalDefs:
    return GlobalDefs(**values)


SSL_BLOCK = Block("SSL", {
    "password": value("password", word),
    "ca": value("ca", word),
    "certificate": value("certificate", word),
    "key": value("key", word),
})


def load_ssl(ctx: Ctx, node: Node) -> SslConfig:
    return SslConfig(**SSL_BLOCK.run(ctx, node))


__all__ = ["GLOBAL_DEFS", "build_global_defs", "load_global_defs", "load_ssl"]
