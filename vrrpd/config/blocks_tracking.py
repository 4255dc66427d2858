"""``vrrp_script``, ``track_file`` / ``vrrp_track_file`` and ``vrrp_sync_group`` blocks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from vrrpd.config.model_vrrp import SyncGroup, TrackFile, VrrpScript
from vrrpd.config.nodes import Node, Token
from vrrpd.config.schema import (
    Block,
    Ctx,
    Handler,
    Values,
    command,
    deprecated,
    flag,
    line_list,
    not_acted,
    value,
)
from vrrpd.config.values import int_range, seconds, word
from vrrpd.config.vrrp_lines import parse_track_file, parse_track_interface, parse_track_script


def _weight(lo: int, hi: int) -> Handler:
    def handle(ctx: Ctx, node: Node, values: Values) -> None:
        got = ctx.arg(node, int_range(lo, hi), extra_ok=True)
        if got is None:
            return
        values["weight"] = got
        if len(node.args) > 1:
            if node.args[1].text == "reverse":
                values["weight_reverse"] = True
            else:
                ctx.extra(node, 1)
        if len(node.args) > 2:
            ctx.extra(node, 2)

    return handle


def _user(ctx: Ctx, node: Node, values: Values) -> None:
    if not node.args:
        ctx.error(node.pos, "'user' needs a user name: user USER [GROUP]")
        return
    values["user"] = node.args[0].text
    if len(node.args) > 1:
        values["group"] = node.args[1].text
    if len(node.args) > 2:
        ctx.extra(node, 2)


VRRP_SCRIPT = Block("vrrp_script", {
    "script": command("script", user_allowed=False),
    "interval": value("interval", seconds(0, 1e6, allow_zero=False)),
    "timeout": value("timeout", seconds(0, 1e6, allow_zero=False)),
    "weight": _weight(-253, 253),
    "rise": value("rise", int_range(1, 1_000_000)),
    "fall": value("fall", int_range(1, 1_000_000)),
    "user": _user,
    "init_fail": flag("init_fail"),
})


def _named(ctx: Ctx, node: Node, kind: str) -> str | None:
    if not node.args:
        ctx.error(node.pos, f"'{kind}' needs a name", "the block is ignored")
        return None
    if len(node.args) > 1:
        ctx.extra(node, 1)
    return node.args[0].text


def load_vrrp_script(ctx: Ctx, node: Node) -> VrrpScript | None:
    name = _named(ctx, node, "vrrp_script")
    if name is None:
        return None
    values = VRRP_SCRIPT.run(ctx, node)
    script = values.pop("script", None)
    if script is None:
        ctx.error(node.pos, f"vrrp_script {name} has no 'script'", "it is ignored")
        return None
    user = values.pop("user", None)
    group = values.pop("group", None)
    if user is not None and script.user is None:
        script = dataclasses.replace(script, user=user, group=group)
    values.setdefault("timeout", values.get("interval", 1.0))
    return VrrpScript(name=name, script=script, pos=node.pos, **values)


def _init_file(ctx: Ctx, node: Node, values: Values) -> None:
    values["init_file"] = True
    for tok in node.args:
        if tok.text == "overwrite":
            values["init_overwrite"] = True
        else:
            got = ctx.parse(tok, "init_file", int_range(-(2**31), 2**31 - 1))
            if got is not None:
                values["init_value"] = got


TRACK_FILE = Block("track_file", {
    "file": value("file", word),
    "weight": _weight(-254, 254),
    "init_file": _init_file,
})


def load_track_file(ctx: Ctx, node: Node) -> TrackFile | None:
    name = _named(ctx, node, node.name)
    if name is None:
        return None
    values = TRACK_FILE.run(ctx, node)
    if "file" not in values:
        ctx.error(node.pos, f"{node.name} {name} has no 'file'", "it is ignored")
        return None
    return TrackFile(name=name, pos=node.pos, **values)


def _member(ctx: Ctx, node: Node, tokens: Sequence[Token]) -> str | None:
    if len(tokens) > 1:
        ctx.warn(tokens[1].pos, "one vrrp_instance name per line in a sync group 'group'; "
                                "the rest is also taken as names")
    return tokens[0].text


def _group(ctx: Ctx, node: Node, values: Values) -> None:
    if node.children is None:
        ctx.error(node.pos, "'group' expects a '{ ... }' block of vrrp_instance names")
        return
    names = list(values.get("members", ()))
    for child in node.children:
        names.extend(t.text for t in (child.keyword, *child.args))
    values["members"] = tuple(names)


SYNC_GROUP = Block("vrrp_sync_group", {
    "group": _group,
    "notify_master": command("notify_master"),
    "notify_backup": command("notify_backup"),
    "notify_fault": command("notify_fault"),
    "notify_stop": command("notify_stop"),
    "notify": command("notify"),
    "smtp_alert": flag("smtp_alert"),
    "global_tracking": deprecated(flag("global_tracking"), "use sync_group_tracking_weight"),
    "sync_group_tracking_weight": flag("sync_group_tracking_weight"),
    "track_interface": line_list("track_interfaces", parse_track_interface),
    "track_script": line_list("track_scripts", parse_track_script),
    "track_file": line_list("track_files", parse_track_file),
    "track_process": not_acted(),
    "track_bfd": not_acted(),
    "notify_deleted": not_acted(),
})


def load_sync_group(ctx: Ctx, node: Node) -> SyncGroup | None:
    name = _named(ctx, node, "vrrp_sync_group")
    if name is None:
        return None
    values = SYNC_GROUP.run(ctx, node)
    if not values.get("members"):
        ctx.error(node.pos, f"vrrp_sync_group {name} has no 'group {{ ... }}' of instances",
                  "it is ignored")
        return None
    return SyncGroup(name=name, pos=node.pos, **values)
