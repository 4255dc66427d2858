"""Re-run the demo inside a QEMU guest when the host kernel has no IPVS.

The guest machinery (vmlinux extraction, busybox initramfs, 9p root, ``run_in_guest``) is the
kernel-tier's ``tests/guest/qemu.py`` (stdlib only, owned by the IPVS-client engineer).  A package
must not import from ``tests/``, so it is loaded here by file path from the checkout the demo
runs from; without a checkout the demo says so and stops.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from vrrpd.demo.report import Reporter
from vrrpd.demo.topology import REPO

QEMU_MODULE = REPO / "tests" / "guest" / "qemu.py"
GUEST_TIMEOUT = float(os.environ.get("VRRPD_DEMO_GUEST_TIMEOUT", "900"))


def load_qemu_module(path: Path = QEMU_MODULE) -> ModuleType:
    """``tests/guest/qemu.py`` loaded by path under a private module name."""
    name = "_vrrpd_demo_guest_qemu"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.exists():
        raise FileNotFoundError(f"{path}: the QEMU guest machinery is missing (run the demo "
                                "from a vrrpd checkout)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module while the class is built
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def run_demo_in_guest(rep: Reporter, extra_args: Sequence[str] = ()) -> int:
    """Boot the guest, run ``python -m vrrpd.demo --inside-guest`` there, stream its output;
    the guest demo's exit code (1 when the guest did not boot or timed out)."""
    try:
        qemu = load_qemu_module()
    except (OSError, ImportError) as exc:
        print(f"vrrpd demo: cannot boot a guest: {exc}", file=sys.stderr)
        return 1
    if shutil.which("qemu-system-x86_64") is None:
        print("vrrpd demo: qemu-system-x86_64 missing (run scripts/setup.sh)", file=sys.stderr)
        return 1
    try:
        image = qemu.prepare_image()
    except Exception as exc:
        print(f"vrrpd demo: cannot prepare the guest kernel/initramfs: {exc}", file=sys.stderr)
        return 1
    rep.step(f"guest: kernel {image.version} (uncompressed, cached in {image.kernel.parent}); "
             "booting qemu-system-x86_64 -accel tcg")
    lock = threading.Lock()

    def on_console(line: str) -> None:
        if "vrrpd-guest:" in line and "vrrpd-guest: done" not in line:  # exit code: below
            with lock:
                rep.step(f"guest console: {line[line.index('vrrpd-guest:'):].strip()}")

    def on_output(line: str) -> None:
        with lock:
            print(f"  guest> {line}", flush=True)

    share = Path(tempfile.mkdtemp(prefix="dm-guest-"))
    try:
        result = qemu.run_in_guest(
            [sys.executable, "-m", "vrrpd.demo", "--inside-guest", *extra_args], share,
            cwd=str(REPO), env={"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)},
            timeout=GUEST_TIMEOUT, smp=int(os.environ.get("VRRPD_GUEST_SMP", "2")),
            image=image, on_console=on_console, on_output=on_output,
        )
    finally:
        shutil.rmtree(share, ignore_errors=True)
    boot = f"{result.boot_seconds:.1f} s" if result.boot_seconds is not None else "never"
    rep.step(f"guest: powered off after {result.total_seconds:.1f} s (ready after {boot}), "
             f"demo exit code {result.returncode}")
    if result.returncode is None:
        why = "timed out" if result.timed_out else "did not finish"
        print(f"vrrpd demo FAILED: the guest {why}; console log tail:\n"
              + "\n".join(result.console.splitlines()[-30:]), file=sys.stderr)
        return 1
    return int(result.returncode)
