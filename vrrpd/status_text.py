"""Human rendering of the status document (``vrrpd status`` without ``--json``)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from vrrpd.status import CheckerStatus, InstanceStatus, RealServerStatus, StatusDocument

__all__ = ["format_status", "table"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns, two spaces apart, trailing spaces trimmed."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip()
            for r in (header, *rows)]


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h}h"
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _master(i: InstanceStatus) -> str:
    m = i["master"]
    if m is None:
        return "-"
    if i["state"] == "MASTER":
        return f"{m['address']} (us)"
    return f"{m['address']} ({m['priority']})"


def _check(c: CheckerStatus) -> str:
    word = "up" if c["up"] else "DOWN"
    extra = c["last_result"]
    if c["latency"] is not None and c["last_ok"] is not None:
        extra += f", {c['latency'] * 1e3:.1f} ms"
    return f"{c['kind']} {c['target']} {word} ({extra})"


def _rs_state(rs: RealServerStatus) -> str:
    if rs["alive"] is None:
        return "-"
    return "alive" if rs["alive"] else "DEAD"


def format_status(doc: StatusDocument, *, now: float | None = None) -> str:
    now = time.time() if now is None else now
    d = doc["daemon"]
    head = f"vrrpd pid {d['pid']}"
    if d["router_id"]:
        head += f", router_id {d['router_id']}"
    if d["started_at"]:
        head += f", up {_duration(now - d['started_at'])}"
    if d["config"]:
        head += f", config {d['config']}"
    lines = [head]
    procs = doc.get("processes") or []
    if procs:
        rows = [[p.get("role", "?"), str(p.get("pid") or "-"),
                 ("ready" if p.get("ready") else "starting") if p.get("alive")
                 else f"DOWN ({p.get('last_exit') or '?'})",
                 _duration(up) if (up := p.get("uptime")) is not None else "-",
                 str(p.get("restarts", 0)), p.get("error") or p.get("status") or ""]
                for p in procs]
        lines += table(["PROCESS", "PID", "STATE", "UP", "RESTARTS", "NOTE"], rows, "  ")
    r = doc["reloads"]
    if r["last_result"] is not None:
        ago = f" {_duration(now - r['last_at'])} ago" if r["last_at"] else ""
        lines.append(f"last reload: {r['last_result']}{ago} "
                     f"({r['succeeded']} ok, {r['failed']} failed)")
        if r["last_result"] == "failed":
            lines.append("  the new config was rejected; still running the previous one:")
            lines += [f"    {e}" for e in r["errors"]]
    insts = doc["instances"]
    if insts:
        lines += ["", "VRRP instances"]
        rows = []
        for i in insts:
            c = i["counters"]
            state = i["state"] + (" (wants MASTER)" if i["wants_master"] else "")
            since = (_duration(now - i["last_transition"])
                     if i["last_transition"] is not None else "-")
            rows.append([i["name"], i["interface"], str(i["vrid"]), state, since,
                         f"{i['base_priority']}/{i['effective_priority']}", _master(i),
                         f"{c['adverts_sent']}/{c['adverts_received']}",
                         str(sum(c["drops"].values())), str(c["transitions"]),
                         "-" if c["garps_sent"] is None else str(c["garps_sent"])])
        lines += table(["NAME", "IFACE", "VRID", "STATE", "SINCE", "PRIO", "MASTER",
                        "ADV TX/RX", "DROPS", "TRANS", "GARPS"], rows, "  ")
        for i in insts:
            drops = {k: v for k, v in i["counters"]["drops"].items() if v}
            notes = []
            if drops:
                notes.append("drops " + " ".join(f"{k}={v}" for k, v in sorted(drops.items())))
            if i["fault"]:
                notes.append("tracker fault")
            if notes:
                lines.append(f"  {i['name']}: {'; '.join(notes)}")
    vss = doc["virtual_servers"]
    if vss:
        lines += ["", "Virtual servers"]
    for vs in vss:
        q = ("quorum ?" if vs["quorum_up"] is None else
             f"quorum {'up' if vs['quorum_up'] else 'LOST'}")
        if vs["alive_weight"] is not None:
            q += f" (alive weight {vs['alive_weight']}, quorum {vs['quorum']})"
        if vs["sorry_active"]:
            q += ", sorry server active"
        conns = f", {vs['stats']['active_conns']} active conns" if vs["stats"] else ""
        lines.append(f"  {vs['key']}  {vs['scheduler']} {vs['lvs_method']}  {q}{conns}")
        rows = []
        for rs in vs["real_servers"]:
            ipvs = "-" if rs["ipvs_weight"] is None else str(rs["ipvs_weight"])
            checks = "; ".join(_check(c) for c in rs["checkers"]) or "-"
            name = f"{rs['address']}:{rs['port']}" + (" (sorry)" if rs["sorry"] else "")
            act = str(rs["stats"]["active_conns"]) if rs["stats"] else "-"
            rows.append([name, str(rs["weight"]), ipvs, _rs_state(rs), act, checks])
        lines += table(["REAL SERVER", "WEIGHT", "IPVS", "STATE", "ACTIVE", "CHECKS"], rows,
                       "    ")
    lv = doc["lvs"]
    if lv is not None:
        lines.append(f"  IPVS: {lv['services_owned']} services, {lv['syncs']} syncs, "
                     f"{lv['ops']} ops, {lv['failures']} failures"
                     + (f" (last: {lv['last_error']})" if lv["last_error"] else ""))
        if lv.get("fast_start"):
            lines.append(f"  IPVS start cache: {lv['fast_start']}")
    mail = doc.get("mail")
    if mail:
        lines += ["", f"mail alerts: {mail['sent']} sent, {mail['failed']} failed, "
                      f"{mail['dropped']} dropped"
                  + (f" (last error: {mail['last_error']})" if mail["last_error"] else "")]
    if not insts and not vss:
        lines.append("nothing running (no vrrp_instance or virtual_server)")
    return "\n".join(lines) + "\n"
