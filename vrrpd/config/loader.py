"""keepalived.conf -> :class:`~vrrpd.config.model.Config`.

Public API::

    load(path, *, config_id) -> LoadResult(config, diagnostics)
    load_text(text, *, config_id="", filename="<string>", base_dir=None) -> LoadResult
    load_tree(nodes, diagnostics) -> Config

A Config is always returned; callers decide from the diagnostics' severities
(FATAL: keepalived would refuse to run; ERROR: it would run without the item).
"""

from __future__ import annotations

import dataclasses
import gc
import os
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

from vrrpd.config.blocks_global import build_global_defs, load_global_defs, load_ssl
from vrrpd.config.blocks_lvs import build_virtual_server, load_virtual_server, load_vs_group
from vrrpd.config.blocks_tracking import load_sync_group, load_track_file, load_vrrp_script
from vrrpd.config.blocks_vrrp import build_instance, load_instance, vrrp_smtp_alert
from vrrpd.config.errors import Diagnostic, did_you_mean
from vrrpd.config.model import Config, GlobalDefs, SslConfig
from vrrpd.config.model_lvs import VirtualServer, VirtualServerGroup
from vrrpd.config.model_vrrp import SyncGroup, TrackFile, VrrpInstance, VrrpScript
from vrrpd.config.nodes import Node
from vrrpd.config.references import (
    check_lvs_references,
    check_script_security,
    check_vrrp_references,
)
from vrrpd.config.schema import NOT_ACTED, Ctx, Values
from vrrpd.config.syntax import read_tree, read_tree_text

__all__ = ["LoadResult", "load", "load_text", "load_tree"]

N = TypeVar("N", VrrpScript, TrackFile, SyncGroup, VirtualServerGroup)

TOP_LEVEL = (
    "global_defs", "vrrp_script", "track_file", "vrrp_track_file", "vrrp_sync_group",
    "vrrp_instance", "virtual_server_group", "virtual_server", "SSL",
)
# keepalived top-level blocks vrrpd recognises but does not implement.
TOP_NOT_ACTED = (
    "static_ipaddress", "static_routes", "static_rules", "linkbeat_interfaces",
    "interface_up_down_delays", "static_track_group", "bfd_instance", "vrrp_track_process",
    "garp_group", "net_namespace", "net_namespace_ipvs", "namespace_with_ipsets", "instance",
    "use_pid_dir", "linkbeat_use_polling", "child_wait_time",
)


class LoadResult(NamedTuple):
    config: Config
    diagnostics: tuple[Diagnostic, ...]


def load(path: str | os.PathLike[str], *, config_id: str) -> LoadResult:
    diagnostics: list[Diagnostic] = []
    nodes = read_tree(path, config_id=config_id, diagnostics=diagnostics)
    config = load_tree(nodes, diagnostics)
    return LoadResult(config, tuple(diagnostics))


def load_text(text: str, *, config_id: str = "", filename: str = "<string>",
              base_dir: str | None = None) -> LoadResult:
    diagnostics: list[Diagnostic] = []
    nodes = read_tree_text(text, filename=filename, config_id=config_id,
                           diagnostics=diagnostics, base_dir=base_dir)
    config = load_tree(nodes, diagnostics)
    return LoadResult(config, tuple(diagnostics))


def load_tree(nodes: Sequence[Node], diagnostics: list[Diagnostic]) -> Config:
    # Like the syntax layer: building makes many small acyclic objects; pausing the
    # cyclic GC meanwhile halves the time on large configs.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Loader(Ctx(diagnostics)).run(nodes)
    finally:
        if was_enabled:
            gc.enable()


class _Loader:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.gdefs: Values = {}
        self.scripts: dict[str, VrrpScript] = {}
        self.track_files: dict[str, TrackFile] = {}
        self.sync_groups: dict[str, SyncGroup] = {}
        self.instances: list[Values] = []
        self.vs_groups: dict[str, VirtualServerGroup] = {}
        self.virtual_servers: list[Values] = []
        self.ssl: SslConfig | None = None

    def run(self, nodes: Sequence[Node]) -> Config:
        for node in nodes:
            self.top(node)
        gdefs = self._global_defs()
        instances = self._instances(gdefs)
        self.sync_groups = {name: g if g.smtp_alert is not None
                            else dataclasses.replace(g, smtp_alert=vrrp_smtp_alert(gdefs))
                            for name, g in self.sync_groups.items()}
        vss: list[VirtualServer] = []
        for raw in self.virtual_servers:
            vs = build_virtual_server(self.ctx, raw, gdefs)
            if vs is not None:
                vss.append(vs)
        instances, sync_groups = check_vrrp_references(
            self.ctx, instances, self.scripts, self.track_files, self.sync_groups)
        vss = check_lvs_references(self.ctx, vss, self.vs_groups, self.track_files)
        config = Config(global_defs=gdefs, vrrp_scripts=self.scripts,
                        track_files=self.track_files, vrrp_sync_groups=sync_groups,
                        vrrp_instances=tuple(instances), virtual_server_groups=self.vs_groups,
                        virtual_servers=tuple(vss), ssl=self.ssl,
                        source=nodes[0].pos if nodes else None)
        check_script_security(self.ctx, config)
        return config

    def top(self, node: Node) -> None:
        ctx = self.ctx
        name = node.name
        if name in TOP_NOT_ACTED:
            ctx.warn(node.pos, f"'{name}' {NOT_ACTED}")
            return
        if name not in TOP_LEVEL:
            ctx.warn(node.pos, f"unknown top-level keyword '{name}'",
                     did_you_mean(name, TOP_LEVEL) or "it is ignored")
            return
        if node.children is None:
            ctx.error(node.pos, f"'{name}' expects a '{{ ... }}' block", "it is ignored")
            return
        if name == "global_defs":
            load_global_defs(ctx, node, self.gdefs)
        elif name == "vrrp_script":
            self._named(self.scripts, load_vrrp_script(ctx, node), name)
        elif name in ("track_file", "vrrp_track_file"):
            self._named(self.track_files, load_track_file(ctx, node), name)
        elif name == "vrrp_sync_group":
            self._named(self.sync_groups, load_sync_group(ctx, node), name)
        elif name == "vrrp_instance":
            raw = load_instance(ctx, node)
            if raw is not None:
                self.instances.append(raw)
        elif name == "virtual_server_group":
            self._named(self.vs_groups, load_vs_group(ctx, node), name)
        elif name == "virtual_server":
            vs = load_virtual_server(ctx, node)
            if vs is not None:
                self.virtual_servers.append(vs)
        elif name == "SSL":
            self.ssl = load_ssl(ctx, node)

    def _named(self, table: dict[str, N], item: N | None, kind: str) -> None:
        if item is None:
            return
        if item.name in table:
            self.ctx.error(item.pos, f"{kind} '{item.name}' is defined twice "
                                     f"(first at {table[item.name].pos})",
                           "the later one is ignored")
            return
        table[item.name] = item

    def _global_defs(self) -> GlobalDefs:
        return build_global_defs(self.gdefs)

    def _instances(self, gdefs: GlobalDefs) -> list[VrrpInstance]:
        out: list[VrrpInstance] = []
        names: dict[str, VrrpInstance] = {}
        for raw in self.instances:
            inst = build_instance(self.ctx, raw, gdefs)
            if inst is None:
                continue
            if inst.name in names:
                self.ctx.error(inst.pos or raw["pos"], f"vrrp_instance '{inst.name}' is defined "
                               f"twice (first at {names[inst.name].pos})",
                               "the later one is ignored")
                continue
            names[inst.name] = inst
            out.append(inst)
        return out
