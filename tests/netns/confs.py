"""keepalived.conf text for lab tests; the same text is fed to keepalived and to vrrpd."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# golden bytes captured from keepalived 2.2.7 (copied from ../shared/vectors into the repo)
VECTORS = Path(__file__).resolve().parents[1] / "unit" / "vrrpd" / "vrrp" / "vectors"


def instance(name: str, *, vrid: int, priority: int, vips: Sequence[str],
             state: str = "BACKUP", interface: str = "eth0", advert_int: int = 1,
             nopreempt: bool = False, auth_pass: str | None = None,
             unicast_src: str | None = None, unicast_peers: Sequence[str] = (),
             track_scripts: Sequence[str] = (), track_interfaces: Sequence[str] = (),
             garp_master_delay: int | None = None, extra: str = "") -> str:
    lines = [f"vrrp_instance {name} {{", f"    state {state}", f"    interface {interface}",
             f"    virtual_router_id {vrid}", f"    priority {priority}",
             f"    advert_int {advert_int}"]
    if nopreempt:
        lines.append("    nopreempt")
    if garp_master_delay is not None:
        lines.append(f"    garp_master_delay {garp_master_delay}")
    if auth_pass is not None:
        lines += ["    authentication {", "        auth_type PASS",
                  f"        auth_pass {auth_pass}", "    }"]
    if unicast_src:
        lines.append(f"    unicast_src_ip {unicast_src}")
    if unicast_peers:
        lines += ["    unicast_peer {", *(f"        {p}" for p in unicast_peers), "    }"]
    if track_scripts:
        lines += ["    track_script {", *(f"        {s}" for s in track_scripts), "    }"]
    if track_interfaces:
        lines += ["    track_interface {", *(f"        {i}" for i in track_interfaces), "    }"]
    lines += ["    virtual_ipaddress {", *(f"        {v}" for v in vips), "    }"]
    if extra:
        lines.append(extra)
    lines.append("}")
    return "\n".join(lines) + "\n"


def script(name: str, command: str, *, interval: int = 1, weight: int = 0,
           fall: int = 1, rise: int = 1, timeout: int | None = None) -> str:
    lines = [f"vrrp_script {name} {{", f'    script "{command}"', f"    interval {interval}",
             f"    weight {weight}", f"    fall {fall}", f"    rise {rise}"]
    if timeout is not None:
        lines.append(f"    timeout {timeout}")
    return "\n".join([*lines, "}"]) + "\n"


def sync_group(name: str, members: Sequence[str]) -> str:
    return (f"vrrp_sync_group {name} {{\n    group {{\n"
            + "".join(f"        {m}\n" for m in members) + "    }\n}\n")


def config(router_id: str, *blocks: str) -> str:
    head = ("global_defs {\n"
            f"    router_id {router_id}\n"
            "    script_user root\n"
            "    enable_script_security\n"
            "}\n")
    return head + "".join(blocks)


def master_down(priority: int, advert_int: int = 1) -> float:
    """Master_Down_Interval of a backup with this priority (VRRPv2, skew not scaled)."""
    return 3 * advert_int + skew(priority)


def skew(priority: int) -> float:
    return (256 - priority) / 256
