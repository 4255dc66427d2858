"""Boot Debian's kernel in QEMU with the host root shared read-only and run one command.

The recipe (measured in ../../../shared/notes/platform.md): an uncompressed ``vmlinux`` extracted
from /boot/vmlinuz-* (TCG decompresses XZ slowly), a tiny busybox initramfs that loads the 9p,
virtio and overlay modules, mounts the host ``/`` over 9p read-only with a tmpfs overlay on top and
``switch_root``s into it.  A second, writable 9p share (a host temp directory) carries the command
script in and its output, exit code and reports out.  TCG only: KVM here is ``kvm_pvm``.

Stdlib only: this module is imported by the pytest plugin on the host.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import io
import lzma
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Where the guest sees the writable share.
GUEST_SHARE = "/mnt/vrrpd-share"
READY_MARK = "vrrpd-guest: ready"
DONE_MARK = "vrrpd-guest: done rc="

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")
_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
_XZ_MAGIC = b"\xfd7zXZ\x00"

_INIT = """#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in $($B cat /modules.order); do
    $B insmod /lib/modules/$m || echo "vrrpd-guest: insmod $m failed"
done
$B mkdir -p /lower /rw /newroot
if ! $B mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,multidevs=remap,msize=262144,ro \\
        hostroot /lower; then
    echo "vrrpd-guest: cannot mount the host root over 9p"; $B poweroff -f
fi
$B mount -t tmpfs -o mode=0755 rw /rw
$B mkdir -p /rw/upper /rw/work
if ! $B mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot
then
    echo "vrrpd-guest: cannot mount the overlay"; $B poweroff -f
fi
$B mkdir -p /newroot/mnt/vrrpd-share
if ! $B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 \
        vrrpdshare /newroot/mnt/vrrpd-share; then
    echo "vrrpd-guest: cannot mount the result share"; $B poweroff -f
fi
$B umount /proc /sys /dev 2>/dev/null
exec $B switch_root /newroot /bin/busybox sh /mnt/vrrpd-share/stage2.sh
"""

# Runs in the switched root (the host's filesystem through the overlay).
_STAGE2 = """B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
$B mkdir -p /dev/pts /dev/shm
$B mount -t devpts devpts /dev/pts
$B mount -t tmpfs tmpfs /dev/shm
# /tmp stays the overlay's: the host's /tmp shows through read-only (a checkout or cache
# there stays visible) and writes land in the tmpfs upper layer
$B mount -t tmpfs -o mode=0755 tmpfs /run
$B mount -t tmpfs tmpfs /var/tmp 2>/dev/null
$B hostname vrrpd-guest
$B ip link set lo up
echo "vrrpd-guest: ready uptime=$($B cut -d' ' -f1 /proc/uptime)"
S=/mnt/vrrpd-share
/bin/sh $S/run.sh > $S/output.txt 2>&1 < /dev/null
rc=$?
echo $rc > $S/rc
$B sync
echo "vrrpd-guest: done rc=$rc uptime=$($B cut -d' ' -f1 /proc/uptime)"
$B poweroff -f
"""


class GuestError(RuntimeError):
    """The guest could not be prepared or booted; carries the console log when there is one."""


@dataclasses.dataclass(frozen=True)
class GuestImage:
    version: str
    kernel: Path  # uncompressed ELF vmlinux
    initrd: Path


@dataclasses.dataclass(frozen=True)
class GuestResult:
    returncode: int | None  # the command's exit code; None if it never finished
    console: str
    output: str  # the command's stdout+stderr
    boot_seconds: float | None  # launch -> command about to start
    total_seconds: float
    timed_out: bool


def cache_dir() -> Path:
    return Path(os.environ.get("VRRPD_GUEST_CACHE", "/var/cache/vrrpd-test"))


def find_kernel() -> tuple[str, Path]:
    """The newest /boot/vmlinuz-VER that has /lib/modules/VER with ip_vs."""
    found = []
    for path in Path("/boot").glob("vmlinuz-*"):
        version = path.name.removeprefix("vmlinuz-")
        if (Path("/lib/modules") / version / "modules.dep").exists():
            found.append((path.stat().st_mtime, version, path))
    if not found:
        raise GuestError(
            "no /boot/vmlinuz-* with matching /lib/modules: apt-get install linux-image-amd64"
        )
    _, version, path = max(found)
    return version, path


def extract_vmlinux(vmlinuz: bytes) -> bytes:
    """The ELF kernel inside a bzImage (Debian compresses it with XZ)."""
    start = vmlinuz.find(_XZ_MAGIC)
    while start >= 0:
        try:
            data = lzma.LZMADecompressor().decompress(vmlinuz[start:])
        except lzma.LZMAError:
            data = b""
        if data[:4] == b"\x7fELF":
            return data
        start = vmlinuz.find(_XZ_MAGIC, start + 1)
    raise GuestError("no XZ-compressed ELF kernel found in the bzImage")


def _module_paths(version: str) -> list[str]:
    ordered: list[str] = []
    for name in _MODULES:
        out = subprocess.run(
            ["modprobe", "-S", version, "--show-depends", name],
            check=True, capture_output=True, text=True,
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if parts[:1] == ["insmod"] and parts[1] not in ordered:
                ordered.append(parts[1])
    return ordered


def _cpio_newc(entries: Sequence[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data); directories and symlinks by mode."""
    out = io.BytesIO()

    def put(ino: int, name: str, mode: int, data: bytes) -> None:
        encoded = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))

    for ino, (name, mode, data) in enumerate(entries, start=1):
        put(ino, name, mode, data)
    put(0, "TRAILER!!!", 0, b"")
    return out.getvalue()


def build_initramfs(version: str) -> bytes:
    modules = _module_paths(version)
    dirs = ["dev", "proc", "sys", "bin", "lib", "lib/modules"]
    entries: list[tuple[str, int, bytes]] = [(d, stat.S_IFDIR | 0o755, b"") for d in dirs]
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise GuestError("no /bin/busybox: apt-get install busybox-static")
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()))
    entries.append(("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    names = []
    for path in modules:
        data = Path(path).read_bytes()
        name = Path(path).name
        if name.endswith(".xz"):
            data, name = lzma.decompress(data), name.removesuffix(".xz")
        names.append(name)
        entries.append((f"lib/modules/{name}", stat.S_IFREG | 0o644, data))
    entries.append(("modules.order", stat.S_IFREG | 0o644, "\n".join(names).encode() + b"\n"))
    entries.append(("init", stat.S_IFREG | 0o755, _INIT.encode()))
    return _cpio_newc(entries)


def prepare_image(directory: Path | None = None) -> GuestImage:
    """Extract vmlinux and build the initramfs once per kernel (cached by version and mtime)."""
    directory = directory or cache_dir()
    version, vmlinuz = find_kernel()
    st = vmlinuz.stat()
    tag = f"{version}-{int(st.st_mtime)}-{st.st_size}"
    init_tag = hashlib.sha1(repr((_INIT, _MODULES)).encode()).hexdigest()[:10]
    kernel = directory / f"vmlinux-{tag}"
    initrd = directory / f"initrd-{version}-{init_tag}.cpio"
    directory.mkdir(parents=True, exist_ok=True)
    if not kernel.exists():
        _atomic_write(kernel, extract_vmlinux(vmlinuz.read_bytes()))
    if not initrd.exists():
        _atomic_write(initrd, build_initramfs(version))
    return GuestImage(version=version, kernel=kernel, initrd=initrd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def qemu_command(image: GuestImage, share: Path, *, memory_mb: int, smp: int) -> list[str]:
    accel = ["-accel", "tcg", "-cpu", os.environ.get("VRRPD_GUEST_CPU", "max")]
    append = "console=ttyS0 quiet cryptomgr.notests mitigations=off panic=-1 rdinit=/init"
    return [
        "qemu-system-x86_64", *accel, "-machine", "q35", "-m", str(memory_mb),
        "-smp", str(smp), "-nic", "none", "-serial", "stdio", "-nographic", "-no-reboot",
        "-monitor", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                   "multidevs=remap",
        "-virtfs", f"local,path={share},mount_tag=vrrpdshare,security_model=none",
    ]


def _die_with_parent() -> None:
    # QEMU must not outlive a killed pytest (PR_SET_PDEATHSIG = 1).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def run_in_guest(
    argv: Sequence[str],
    share: Path,
    *,
    cwd: str = "/",
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    memory_mb: int = 2048,
    smp: int = 1,
    image: GuestImage | None = None,
    on_console: Callable[[str], object] | None = None,
    on_output: Callable[[str], object] | None = None,
) -> GuestResult:
    """Boot, run ``argv`` (in ``cwd``, with ``env`` added) as root, power off.

    ``share`` is a host directory the guest sees read-write at GUEST_SHARE; the command's
    output is in ``share/output.txt``; ``on_console`` / ``on_output`` get console / output
    lines as they come (from another thread).  Must be called from the main thread
    (PDEATHSIG is tied to the creating thread).
    """
    image = image or prepare_image()
    share.mkdir(parents=True, exist_ok=True)
    for stale in ("output.txt", "rc"):
        (share / stale).unlink(missing_ok=True)
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in (env or {}).items())
    (share / "run.sh").write_text(
        f"export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"export HOME=/root\n{exports}cd {shlex.quote(cwd)} || exit 125\n"
        f"exec {shlex.join(argv)}\n"
    )
    (share / "stage2.sh").write_text(_STAGE2)
    cmd = qemu_command(image, share, memory_mb=memory_mb, smp=smp)
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    console: list[str] = []
    ready: list[float] = []

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = _ANSI.sub("", raw.decode(errors="replace").replace("\r", ""))
            console.append(line)
            if READY_MARK in line and not ready:
                ready.append(time.monotonic() - start)
            if on_console is not None:
                on_console(line)

    finished = threading.Event()

    def tail_output() -> None:  # the share is written through (sync mount): poll it
        assert on_output is not None
        offset, pending = 0, b""
        while True:
            stop = finished.wait(1.0)
            try:
                with (share / "output.txt").open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                chunk = b""
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                on_output(line.decode(errors="replace"))
            if stop:
                return

    thread = threading.Thread(target=reader, name="qemu-console", daemon=True)
    thread.start()
    tailer = None
    if on_output is not None:
        tailer = threading.Thread(target=tail_output, name="qemu-output", daemon=True)
        tailer.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:  # also on KeyboardInterrupt: never leave a guest behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        finished.set()
        if tailer is not None:
            tailer.join(timeout=5)
    thread.join(timeout=5)
    total = time.monotonic() - start
    rc_file = share / "rc"
    returncode = int(rc_file.read_text().strip()) if rc_file.exists() else None
    output_file = share / "output.txt"
    output = output_file.read_text(errors="replace") if output_file.exists() else ""
    text = "".join(console)
    if timed_out:
        text += f"\n[vrrpd-guest: killed after {timeout:.0f} s timeout]\n"
    elif proc.returncode:
        text += f"\n[vrrpd-guest: qemu exited {proc.returncode}]\n"
    return GuestResult(
        returncode=returncode, console=text, output=output,
        boot_seconds=ready[0] if ready else None, total_seconds=total, timed_out=timed_out,
    )


def main(argv: list[str]) -> int:
    """``python tests/guest/qemu.py CMD...``: run one command in a fresh guest (debugging)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vrrpd-guest-") as tmp:
        result = run_in_guest(
            argv or ["uname", "-a"], Path(tmp), cwd=os.getcwd(),
            on_console=lambda line: sys.stderr.write(line),
        )
    sys.stdout.write(result.output)
    sys.stderr.write(
        f"[guest: rc={result.returncode} boot={result.boot_seconds} "
        f"total={result.total_seconds:.1f}s timed_out={result.timed_out}]\n"
    )
    return result.returncode if result.returncode is not None else 99


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
