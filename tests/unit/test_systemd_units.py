"""systemd/ units: `systemd-analyze verify` clean, `security --offline` exposure below a threshold,
the contract of issue 6 (Type=notify, SIGHUP reload, user vrrpd with only NET_ADMIN + NET_RAW),
sysusers.d accepted by systemd-sysusers, modules-load.d loads ip_vs.

Exposure threshold: 3.0.  The unit measures 2.4 here ("OK"; Debian's keepalived.service: 9.6
"UNSAFE").  What keeps it above ~2 is what the daemon exists for or what keepalived configs rely on:
the host network (PrivateNetwork), AF_INET/AF_PACKET/AF_NETLINK sockets, CAP_NET_ADMIN/CAP_NET_RAW
as ambient capabilities, writable /proc/sys/net (no ProtectKernelTunables), a visible process
tree for `pidof`-style vrrp_scripts (no ProtectProc), no MemoryDenyWriteExecute (JIT checkers),
no PrivateUsers.  3.0 leaves room for a harmless directive change while losing the user, the
capability bounding set or ProtectSystem= crosses it (asserted below as a negative control).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
EXPOSURE_THRESHOLD = 3.0
INSTALLED_BINARY = "/usr/local/bin/vrrpd"
ANALYZE = shutil.which("systemd-analyze")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE, "systemd-analyze missing: scripts/setup.sh installs the systemd package"
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=120,
                          check=False)


def systemd_version() -> int:
    out = analyze("--version").stdout
    m = re.match(r"systemd (\d+)", out)
    assert m, out
    return int(m.group(1))


def parse_unit(text: str) -> dict[str, list[str]]:
    """section.key -> values in order (systemd allows a key more than once)."""
    values: dict[str, list[str]] = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values[f"{section}.{key.strip()}"].append(value.strip())
    return values


def runnable_copy(unit: Path, tmp_path: Path, *, drop: tuple[str, ...] = ()) -> Path:
    """The unit with ExecStart pointing at an existing executable (the package's installed
    entry point does not exist on a build machine), optionally without some keys."""
    binary = ROOT / ".venv" / "bin" / "vrrpd"
    target = str(binary) if binary.exists() else "/bin/true"
    lines = [line for line in unit.read_text().splitlines()
             if line.split("=", 1)[0] not in drop]
    out = tmp_path / unit.name
    out.write_text("\n".join(lines).replace(INSTALLED_BINARY, target) + "\n")
    return out


def exposure(unit: Path) -> float:
    proc = analyze("security", "--offline=true", "--no-pager", str(unit))
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))


def test_main_unit_verifies_without_any_diagnostic(tmp_path: Path) -> None:
    proc = analyze("verify", "--man=no", str(runnable_copy(UNITS / "vrrpd.service", tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # unknown keys only warn: none allowed


def test_verify_catches_the_uninstalled_binary(tmp_path: Path) -> None:
    """Negative control: the same check fails on the unit as shipped when the binary is absent."""
    if Path(INSTALLED_BINARY).exists():
        pytest.skip(f"{INSTALLED_BINARY} is installed on this machine")
    copy = tmp_path / "vrrpd.service"
    copy.write_text((UNITS / "vrrpd.service").read_text())
    proc = analyze("verify", "--man=no", str(copy))
    assert proc.returncode != 0 and "not executable" in proc.stderr


def test_notify_reload_variant_verifies(tmp_path: Path) -> None:
    proc = analyze("verify", "--man=no",
                   str(runnable_copy(UNITS / "vrrpd-notify-reload.service", tmp_path)))
    assert proc.returncode == 0, proc.stderr
    complaints = [line for line in proc.stderr.splitlines() if line.strip()]
    if systemd_version() >= 253:
        assert complaints == []
    else:  # 252 (Debian 12) knows neither the type nor ReloadSignal=, and must say only that
        assert len(complaints) == 2, complaints
        assert all("notify-reload" in c or "ReloadSignal" in c for c in complaints), complaints


@pytest.mark.parametrize("name", ["vrrpd.service", "vrrpd-notify-reload.service"])
def test_exposure_below_threshold(name: str, tmp_path: Path) -> None:
    score = exposure(runnable_copy(UNITS / name, tmp_path))
    print(f"{name}: systemd-analyze security exposure {score} (threshold {EXPOSURE_THRESHOLD})")
    assert score < EXPOSURE_THRESHOLD


def test_exposure_threshold_catches_lost_hardening(tmp_path: Path) -> None:
    weak = runnable_copy(UNITS / "vrrpd.service", tmp_path,
                         drop=("User", "Group", "CapabilityBoundingSet", "ProtectSystem"))
    score = exposure(weak)
    print(f"without User/CapabilityBoundingSet/ProtectSystem: exposure {score}")
    assert score >= EXPOSURE_THRESHOLD


def test_main_unit_contract() -> None:
    u = parse_unit((UNITS / "vrrpd.service").read_text())
    assert u["Service.Type"] == ["notify"]
    assert u["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert u["Service.User"] == ["vrrpd"] and u["Service.Group"] == ["vrrpd"]
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert set(" ".join(u[f"Service.{key}"]).split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert "Service.PrivateUsers" not in u  # would confine the capabilities to a user namespace
    assert "Service.ProtectKernelTunables" not in u  # VRRP writes /proc/sys/net
    assert "Service.ProtectProc" not in u and "Service.MemoryDenyWriteExecute" not in u
    assert u["Service.ProtectSystem"] == ["strict"] and u["Service.ProtectHome"] == ["yes"]
    assert u["Service.PrivateTmp"] == ["yes"] and u["Service.NoNewPrivileges"] == ["yes"]
    assert u["Service.Restart"] == ["on-failure"] and u["Service.WatchdogSec"]
    assert u["Service.RuntimeDirectory"] == ["vrrpd"]
    exec_start = u["Service.ExecStart"][0]
    assert exec_start.startswith(INSTALLED_BINARY + " ") and "--dont-fork" in exec_start
    assert "/run/vrrpd/" in exec_start  # pid files in the RuntimeDirectory, writable as vrrpd


def test_the_cli_accepts_every_option_of_exec_start() -> None:
    from vrrpd.cli import build_parser

    exec_start = parse_unit((UNITS / "vrrpd.service").read_text())["Service.ExecStart"][0]
    argv = [a for a in exec_start.split()[1:] if not a.startswith("$")]
    args = build_parser().parse_args(argv)
    assert args.config == "/etc/keepalived/keepalived.conf" and args.dont_fork
    assert args.pid == "/run/vrrpd/vrrpd.pid"


def test_variant_differs_only_in_the_reload_mechanism() -> None:
    main = parse_unit((UNITS / "vrrpd.service").read_text())
    variant = parse_unit((UNITS / "vrrpd-notify-reload.service").read_text())
    assert variant["Service.Type"] == ["notify-reload"]
    assert variant["Service.ReloadSignal"] == ["SIGHUP"]
    assert "Service.ExecReload" not in variant
    skip = {"Service.Type", "Service.ReloadSignal", "Service.ExecReload"}
    assert {k: v for k, v in main.items() if k not in skip} == \
           {k: v for k, v in variant.items() if k not in skip}


def test_sysusers_creates_the_vrrpd_user(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    assert sysusers, "systemd-sysusers missing: scripts/setup.sh installs the systemd package"
    (tmp_path / "etc").mkdir()
    conf = (UNITS / "sysusers.d" / "vrrpd.conf").read_text()
    proc = subprocess.run([sysusers, f"--root={tmp_path}", "-"], input=conf, text=True,
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    passwd = {line.split(":")[0]: line.split(":")
              for line in (tmp_path / "etc" / "passwd").read_text().splitlines()}
    assert "vrrpd" in passwd
    uid, shell = int(passwd["vrrpd"][2]), passwd["vrrpd"][6]
    assert 0 < uid < 1000  # a system user
    assert shell.endswith("nologin")
    assert any(line.startswith("vrrpd:")
               for line in (tmp_path / "etc" / "group").read_text().splitlines())


def test_modules_load_lists_ip_vs() -> None:
    text = (UNITS / "modules-load.d" / "vrrpd.conf").read_text()
    modules = [line.strip() for line in text.splitlines()
               if line.strip() and not line.lstrip().startswith(("#", ";"))]
    assert modules == ["ip_vs"]
