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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from vrrpd.config.blocks_global import build_global_defs, load_global_defs, load_ssl
from vrrpd.config.blocks_lvs import build_virtual_server, load_virtual_server, load_vs_group
from vrrpd.config.blocks_tracking import load_sync_group, load_track_file, load_vrrp_script
from vrrpd.config.blocks_vrrp import build_instance, load_instance, vrrp_smtp_alert
from vrrpd.config.errors import Diagnostic, did_you_mean
from vrrpd.config.inputs import ConfigInputs, remember
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

__all__ = ["LoadResult", "Loaded", "Piece", "load", "load_piece", "load_pieces", "load_text",
           "load_tree"]

N = TypeVar("N", VrrpScript, TrackFile, SyncGroup, VirtualServerGroup)
B = TypeVar("B", VrrpInstance, VirtualServer)

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
    inputs = ConfigInputs(main=os.path.abspath(path))
    nodes = read_tree(path, config_id=config_id, diagnostics=diagnostics, inputs=inputs)
    config = load_tree(nodes, diagnostics)
    remember(os.fspath(path), config_id, inputs)  # for the IPVS start cache (fast_start)
    return LoadResult(config, tuple(diagnostics))


def load_text(text: str, *, config_id: str = "", filename: str = "<string>",
              base_dir: str | None = None) -> LoadResult:
    diagnostics: list[Diagnostic] = []
    nodes = read_tree_text(text, filename=filename, config_id=config_id,
                           diagnostics=diagnostics, base_dir=base_dir)
    config = load_tree(nodes, diagnostics)
    return LoadResult(config, tuple(diagnostics))


def load_tree(nodes: Sequence[Node], diagnostics: list[Diagnostic]) -> Config:
    return load_pieces(nodes, diagnostics).config


class Loaded(NamedTuple):
    """:func:`load_pieces`' result: the config, what each top-level node produced (in order,
    ``global_defs`` blocks excepted) and the key of the global definitions the builds used."""

    config: Config
    pieces: list[Piece]
    gdefs_key: GlobalDefs


def load_pieces(nodes: Sequence[Node], diagnostics: list[Diagnostic], *,
                cache: Mapping[int, Piece] | None = None,
                prev_gdefs: GlobalDefs | None = None) -> Loaded:
    """:func:`load_tree`, reusing the :class:`Piece` of every node found in ``cache`` (keyed
    by ``id(node)``, and only for that very Node object), and its built object when the global
    definitions are the same as ``prev_gdefs`` (the ``gdefs_key`` of the load that made it).
    A piece's diagnostics are replayed in place, and every step that involves more than one
    block (duplicate names, references, script security) runs again, so the result is the
    one a load from scratch gives: :mod:`vrrpd.config.incremental` relies on it."""
    # Like the syntax layer: building makes many small acyclic objects; pausing the
    # cyclic GC meanwhile halves the time on large configs.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        loader = _Loader(Ctx(diagnostics), cache or {})
        config, gkey = loader.run(nodes, prev_gdefs)
        return Loaded(config, loader.pieces, gkey)
    finally:
        if was_enabled:
            gc.enable()


class Piece:
    """What one top-level node (other than ``global_defs``) produced.

    ``kind`` says which table the item goes to; ``load_diags`` are the diagnostics its load
    emitted.  For ``vrrp_instance``/``virtual_server`` the build (which depends on the global
    definitions too) is done later: ``raw`` is the loaded values until the build consumes them,
    ``built``/``build_diags`` what the build gave with the global definitions ``gdefs``.
    """

    __slots__ = ("build_diags", "built", "gdefs", "item", "kind", "load_diags", "node", "raw")

    def __init__(self, node: Node, kind: str, item: Any, load_diags: tuple[Diagnostic, ...]
                 ) -> None:
        self.node = node
        self.kind = kind
        self.item = item  # the loaded object; for instance/vs: True when raw values were made
        self.load_diags = load_diags
        self.raw: Values | None = None
        self.built: Any = None
        self.build_diags: tuple[Diagnostic, ...] = ()
        self.gdefs: GlobalDefs | None = None


_NAMED = {"vrrp_script": ("scripts", load_vrrp_script),
          "track_file": ("track_files", load_track_file),
          "vrrp_track_file": ("track_files", load_track_file),
          "vrrp_sync_group": ("sync_groups", load_sync_group),
          "virtual_server_group": ("vs_groups", load_vs_group)}
_RAW = {"vrrp_instance": load_instance, "virtual_server": load_virtual_server}


def load_piece(node: Node) -> Piece:
    """Load one top-level node on its own (not ``global_defs``: those accumulate)."""
    diags: list[Diagnostic] = []
    ctx = Ctx(diags)
    name = node.name
    kind = "none"
    item: Any = None
    raw: Values | None = None
    if name in TOP_NOT_ACTED:
        ctx.warn(node.pos, f"'{name}' {NOT_ACTED}")
    elif name not in TOP_LEVEL:
        ctx.warn(node.pos, f"unknown top-level keyword '{name}'",
                 did_you_mean(name, TOP_LEVEL) or "it is ignored")
    elif node.children is None:
        ctx.error(node.pos, f"'{name}' expects a '{{ ... }}' block", "it is ignored")
    elif name in _NAMED:
        kind, load_named = _NAMED[name]
        item = load_named(ctx, node)
    elif name in _RAW:
        kind = name
        raw = _RAW[name](ctx, node)
        item = raw is not None
    elif name == "SSL":
        kind = "ssl"
        item = load_ssl(ctx, node)
    piece = Piece(node, kind, item, tuple(diags))
    piece.raw = raw
    return piece


class _Loader:
    def __init__(self, ctx: Ctx, cache: Mapping[int, Piece]) -> None:
        self.ctx = ctx
        self.cache = cache
        self.pieces: list[Piece] = []
        self.gdefs: Values = {}
        self.scripts: dict[str, VrrpScript] = {}
        self.track_files: dict[str, TrackFile] = {}
        self.sync_groups: dict[str, SyncGroup] = {}
        self.instances: list[Piece] = []
        self.vs_groups: dict[str, VirtualServerGroup] = {}
        self.virtual_servers: list[Piece] = []
        self.ssl: SslConfig | None = None

    def run(self, nodes: Sequence[Node], prev_gdefs: GlobalDefs | None
            ) -> tuple[Config, GlobalDefs]:
        for node in nodes:
            self.top(node)
        gdefs = build_global_defs(self.gdefs)
        # Builds made with equal global definitions (all fields, positions too) are reused.
        gkey = prev_gdefs if prev_gdefs is not None and repr(prev_gdefs) == repr(gdefs) \
            else gdefs
        instances = self._instances(gdefs, gkey)
        self.sync_groups = {name: g if g.smtp_alert is not None
                            else dataclasses.replace(g, smtp_alert=vrrp_smtp_alert(gdefs))
                            for name, g in self.sync_groups.items()}
        vss: list[VirtualServer] = []
        for piece in self.virtual_servers:
            vs = self._build(piece, build_virtual_server, gdefs, gkey)
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
        return config, gkey

    def top(self, node: Node) -> None:
        if node.keyword.text == "global_defs" and node.children is not None:
            load_global_defs(self.ctx, node, self.gdefs)
            return
        piece = self.cache.get(id(node))
        if piece is None or piece.node is not node:
            piece = load_piece(node)
        self.pieces.append(piece)
        if piece.load_diags:
            self.ctx.diagnostics.extend(piece.load_diags)
        kind = piece.kind
        if kind == "vrrp_instance":
            if piece.item:
                self.instances.append(piece)
        elif kind == "virtual_server":
            if piece.item:
                self.virtual_servers.append(piece)
        elif kind == "ssl":
            self.ssl = piece.item
        elif kind != "none":
            self._named(getattr(self, kind), piece.item, node.name)

    def _build(self, piece: Piece, build: Callable[[Ctx, Values, GlobalDefs], B | None],
               gdefs: GlobalDefs, gkey: GlobalDefs) -> B | None:
        """``build(raw, gdefs)`` of an instance/virtual server piece, or its earlier result."""
        if piece.gdefs is not gkey:
            raw = piece.raw
            if raw is None:  # consumed by a build with other global definitions: load again
                raw = _RAW[piece.kind](Ctx([]), piece.node)
                assert raw is not None
            piece.raw = None
            diags: list[Diagnostic] = []
            piece.built = build(Ctx(diags), raw, gdefs)
            piece.build_diags = tuple(diags)
            piece.gdefs = gkey
        if piece.build_diags:
            self.ctx.diagnostics.extend(piece.build_diags)
        built: B | None = piece.built
        return built

    def _named(self, table: dict[str, N], item: N | None, kind: str) -> None:
        if item is None:
            return
        if item.name in table:
            self.ctx.error(item.pos, f"{kind} '{item.name}' is defined twice "
                                     f"(first at {table[item.name].pos})",
                           "the later one is ignored")
            return
        table[item.name] = item

    def _instances(self, gdefs: GlobalDefs, gkey: GlobalDefs) -> list[VrrpInstance]:
        out: list[VrrpInstance] = []
        names: dict[str, VrrpInstance] = {}
        for piece in self.instances:
            inst = self._build(piece, build_instance, gdefs, gkey)
            if inst is None:
                continue
            if inst.name in names:
                self.ctx.error(inst.pos or piece.node.pos, f"vrrp_instance '{inst.name}' is "
                               f"defined twice (first at {names[inst.name].pos})",
                               "the later one is ignored")
                continue
            names[inst.name] = inst
            out.append(inst)
        return out
