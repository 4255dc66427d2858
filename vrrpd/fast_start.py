"""Cold start: replay the last programmed IPVS table from a cache, before anything is parsed.

Python in a slow guest needs seconds to import the daemon and parse a large config; the table
the config wants at start (every service, every real server at its initial weight) is the
same as last time unless something it depends on changed.  So the first thing ``python -m
vrrpd`` does (:func:`early`, with only ``os``/``_socket``/``struct``/``marshal``
imported) is:

1. look at argv (``-f``, ``-i``, ``-C``/``-P``, ``--cache-dir``, ``--no-cache``; any option it
   does not know: no replay), find the cache file of (config path, config id);
2. check the file is safe (owned by us, not group/world-writable, in such a directory; a
   marshal of bytes and strings only: nothing in it can run) and its key still holds:
   the vrrpd version, the Python version, a digest (size + mtime) of the modules that shape
   the table, the config id, the sha256 of every file the config read and the match list of
   every include pattern it used (:mod:`vrrpd.config.inputs`);
3. when the kernel table has no service at all, send the cached generic-netlink requests
   (:class:`ipvs.replay.IpvsSocket`);
4. with no usable cache (the first start of a config, or the first after an edit), send
   instead the requests :mod:`vrrpd.lvs_direct` reads from the config text, when the config
   is plain enough for it to be sure (outcome ``direct``).

Then the normal start goes on: ``LvsRunner`` dumps the table and finds its services there
(nothing to send); anything that differs is repaired by its reconciler, so a wrong cache never
outlives one start.  Every failure here is silent: the outcome is kept in :data:`OUTCOME` and
logged by the LVS runner (``lvs_fast_start``).  The cache is written by
:mod:`vrrpd.lvs_cache` after a start that programmed the whole table.

``--no-fast-start`` turns both off (the table is programmed after the full parse);
``--no-cache`` only the cache.  No CLI option other than the config's content changes the
table at start (``-I`` and
``--drain-timeout`` matter at stop and later), so the key holds none.  With isolation (VRRP
and virtual servers in one config) the supervising parent replays, before it parses, and
hands the outcome to its ``-C`` child in :data:`ENV_OUTCOME`.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
import time

from ipvs.attrs import IPVS_CMD_DEL_SERVICE, IPVS_CMD_NEW_SERVICE
from vrrpd import __version__

TYPE_CHECKING = False  # typing / collections.abc cost start-up time here
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DEFAULT_CACHE_DIR", "OUTCOME", "STATE", "CacheSettings", "child_env", "early", "settle"]

DEFAULT_CACHE_DIR = "/var/cache/vrrpd"
FORMAT = 1
ENV_OUTCOME = "VRRPD_FAST_START"  # parent -> -C child: what the parent's replay did
ENV_ROLE = "VRRPD_CHILD_ROLE"  # vrrpd.supervisor_parts.ENV_ROLE (not imported: argparse, ctypes)

_VALUE = {  # options taking a value -> the name we keep (None: ignored)
    "-f": "config", "--use-file": "config", "-i": "config_id", "--config-id": "config_id",
    "--cache-dir": "cache_dir", "-p": None, "--pid": None, "-r": None, "--vrrp_pid": None,
    "-c": None, "--checkers_pid": None, "--drain-timeout": None, "--control-socket": None,
    "--metrics": None, "--data-file": None, "--check-data-file": None, "--stats-file": None,
    "--log-level": None, "--log-format": None,
}
_FLAG = {  # options without a value -> the name we keep (None: ignored)
    "-n": None, "--dont-fork": None, "-l": None, "--log-console": None, "-D": None,
    "--log-detail": None, "-I": "keep", "--dont-release-ipvs": "keep",
    "--single-process": "single", "-C": "check", "--check": "check", "-P": "vrrp",
    "--vrrp": "vrrp", "-t": "other", "--config-test": "other", "--dump-config": "other",
    "--list-ipvs": "other", "-h": "other", "--help": "other", "--no-cache": "no_cache",
    "--no-fast-start": "no_fast_start",
}
_SOURCES = (  # the modules whose code decides the cached bytes
    "vrrpd/__init__.py", "vrrpd/fast_start.py", "vrrpd/lvs_cache.py", "vrrpd/lvs.py",
    "vrrpd/lvs_desired.py", "ipvs/model.py", "ipvs/wire.py", "ipvs/batch.py",
    "ipvs/reconcile.py", "ipvs/replay.py",
)


def fnv1a64(text: str) -> int:
    """FNV-1a of ``text``: the cache file's name (not hashlib: see :func:`source_digest`).  A
    collision only costs a replay, as the file's key names the config and id it is for."""
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class CacheSettings:
    __slots__ = ("cache_dir", "config", "config_id", "enabled")

    def __init__(self, config: str, config_id: str, cache_dir: str, enabled: bool) -> None:
        self.config = os.path.abspath(config)
        self.config_id = config_id
        self.cache_dir = cache_dir
        self.enabled = enabled

    def same(self, other: CacheSettings) -> bool:
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    def cache_file(self) -> str:
        name = fnv1a64(self.config + "\0" + self.config_id)
        return os.path.join(self.cache_dir, f"ipvs-{name:016x}.marshal")


STATE: CacheSettings | None = None  # this process runs (or supervises) LVS with these
OUTCOME: dict[str, object] | None = None  # what the start-up replay did
_looked = False


class Skip(Exception):
    """Why the replay did not happen (its text is the logged reason)."""


# ---------------------------------------------------------------- argv


def look(argv: Sequence[str]) -> dict[str, str] | None:
    """The few options we need, or None when argv holds anything we do not know for sure
    (abbreviations, ``-fCONF``, positional words): then argparse decides and we do nothing."""
    found: dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _VALUE:
            if not eq:
                i += 1
                if i >= len(args):
                    return None
                value = args[i]
            if _VALUE[name] is not None:
                found[str(_VALUE[name])] = value
        elif name in _FLAG and not eq:
            if _FLAG[name] is not None:
                found[str(_FLAG[name])] = "1"
        else:
            return None
        i += 1
    return found


def short_hostname() -> str:
    return os.uname().nodename.split(".", 1)[0]  # gethostname(), without importing socket


def settings_from(found: dict[str, str]) -> CacheSettings:
    return CacheSettings(found.get("config", "/etc/keepalived/keepalived.conf"),
                         found.get("config_id") or short_hostname(),
                         found.get("cache_dir", DEFAULT_CACHE_DIR), "no_cache" not in found)


# ---------------------------------------------------------------- key


def source_digest() -> str:
    """Size and mtime of every module that decides the cached bytes (stat only, no reads)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config_dir = os.path.join(root, "vrrpd", "config")
    try:
        names = sorted(f"vrrpd/config/{n}" for n in os.listdir(config_dir) if n.endswith(".py"))
    except OSError:
        names = []
    import hashlib  # only when a cache file exists: loading OpenSSL costs 0.1 s in the guest

    h = hashlib.sha256()
    for rel in (*_SOURCES, *names):
        try:
            st = os.stat(os.path.join(root, rel))
            h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}:missing\n".encode())
    return h.hexdigest()


def base_key(settings: CacheSettings) -> dict[str, object]:
    """Everything of the key but the config's inputs."""
    return {"format": FORMAT, "version": __version__,
            "python": f"{sys.version_info[0]}.{sys.version_info[1]}", "sources": source_digest(),
            "config": settings.config, "config_id": settings.config_id}


def file_sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def check_key(stored: object, settings: CacheSettings) -> None:
    """Raise :class:`Skip` naming the first part of ``stored`` that no longer holds."""
    if not isinstance(stored, dict):
        raise Skip("bad_cache")
    for name, value in base_key(settings).items():
        if stored.get(name) != value:
            raise Skip(f"stale_key:{name}")
    files, patterns = stored.get("files"), stored.get("patterns")
    if not isinstance(files, list) or not isinstance(patterns, list) or not files:
        raise Skip("bad_cache")
    for path, digest in files:
        try:
            if file_sha256(path) != digest:
                raise Skip(f"stale_key:file {path}")
        except OSError:
            raise Skip(f"stale_key:file {path}") from None
    if patterns:
        from vrrpd.config.inputs import match_include

        for pattern, matches in patterns:
            if tuple(match_include(pattern)) != tuple(matches):
                raise Skip(f"stale_key:include {pattern}")


# ---------------------------------------------------------------- cache file


def safe(st: os.stat_result) -> bool:
    """Ours alone: owned by the effective uid, not writable by group or others."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def read_cache(settings: CacheSettings) -> dict[str, object]:
    try:
        dst = os.lstat(settings.cache_dir)
    except OSError:
        raise Skip("no_cache") from None
    if not stat.S_ISDIR(dst.st_mode) or not safe(dst):
        raise Skip("unsafe_cache_dir")
    try:
        fd = os.open(settings.cache_file(), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise Skip("no_cache") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not safe(st):
            raise Skip("unsafe_cache_file")
        data = fh.read()
    try:
        cache = marshal.loads(data)
    except (ValueError, EOFError, TypeError):
        raise Skip("bad_cache") from None
    if not isinstance(cache, dict):
        raise Skip("bad_cache")
    cmds, payloads = cache.get("cmds"), cache.get("payloads")
    if (not isinstance(cmds, bytes) or not isinstance(payloads, list) or not payloads
            or len(cmds) != len(payloads) or not all(type(p) is bytes for p in payloads)):
        raise Skip("bad_cache")
    return cache


# ---------------------------------------------------------------- replay


def cached_requests(settings: CacheSettings) -> tuple[bytes, list[bytes], int]:
    """The cached requests (commands, attributes, services), or :class:`Skip` saying why
    not."""
    cache = read_cache(settings)
    check_key(cache.get("key"), settings)
    payloads, cmds, services = cache["payloads"], cache["cmds"], cache.get("services", 0)
    assert isinstance(payloads, list) and isinstance(cmds, bytes)
    return cmds, payloads, services if isinstance(services, int) else 0


def replay(settings: CacheSettings, *, arm_undo: bool = False) -> dict[str, object]:
    """Into an empty table, send the cached requests or, when the cache cannot be used,
    those :mod:`vrrpd.lvs_direct` reads from a plain config.  Never raises (but
    KeyboardInterrupt/SystemExit).  ``arm_undo``: see :func:`undo_on_signal`."""
    started = time.monotonic()
    outcome: dict[str, object] = {}
    try:
        from ipvs.replay import IpvsSocket

        with IpvsSocket() as ipvs:
            present = ipvs.service_count()
            if present:
                raise Skip(f"table_not_empty:{present}")
            try:
                if not settings.enabled:
                    raise Skip("disabled")
                cmds, payloads, services = cached_requests(settings)
                outcome["result"] = "replayed"
            except Skip as exc:
                from vrrpd.lvs_direct import requests_of

                got = requests_of(settings.config)
                if isinstance(got, str):
                    raise Skip(f"{exc}, direct:{got}") from None
                cmds, payloads, services = got
                outcome.update(result="direct", cache=str(exc))
            if arm_undo:  # before the first request: a signal now must not leave it behind
                undo_on_signal(cmds, payloads)
            sent, failed = ipvs.send(cmds, payloads)
    except Skip as exc:
        return {"result": "skipped", "reason": str(exc),
                "seconds": round(time.monotonic() - started, 3)}
    except Exception as exc:  # no IPVS, no permission, a timeout: the normal path programs
        return {"result": "skipped", "reason": f"error:{type(exc).__name__}: {exc}",
                "seconds": round(time.monotonic() - started, 3)}
    return {**outcome, "requests": sent, "failed": failed, "services": services,
            "seconds": round(time.monotonic() - started, 3)}


def undo_on_signal(cmds: bytes, payloads: list[bytes]) -> None:
    """Until the daemon installs its own handlers (after the config is parsed, seconds later),
    SIGTERM/SIGINT would kill the process with the replayed table left behind and nobody to
    remove it.  So they delete the replayed services first (DEL_SERVICE takes the service
    attributes NEW_SERVICE had; the kernel drops their destinations with them), then act as
    before: SIGTERM kills the process, SIGINT raises KeyboardInterrupt."""
    import signal

    services = [p for c, p in zip(cmds, payloads, strict=True) if c == IPVS_CMD_NEW_SERVICE]

    def undo(signum: int, _frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal acts at once
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM
                          else signal.default_int_handler)
        try:
            from ipvs.replay import IpvsSocket

            with IpvsSocket() as ipvs:
                ipvs.send(bytes([IPVS_CMD_DEL_SERVICE]) * len(services), services)
        except Exception:  # nothing to report to: logging is not set up yet
            pass
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, undo)


def _encode(outcome: dict[str, object]) -> str:
    return ";".join(f"{k}={v}" for k, v in outcome.items())


def _decode(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for part in text.split(";"):
        k, _, v = part.partition("=")
        out[k] = int(v) if v.isdigit() else v
    return out


def early(argv: Sequence[str]) -> None:
    """The process's first step (``python -m vrrpd``, the ``vrrpd`` script): replay when this
    process (or its ``-C`` child) will run LVS.  Sets :data:`STATE` and :data:`OUTCOME`."""
    global STATE, OUTCOME, _looked
    if _looked:
        return
    _looked = True
    if argv[:1] in (["status"], ["demo"]):
        return
    found = look(argv)
    if found is None:
        OUTCOME = {"result": "skipped", "reason": "argv"}
        return
    inherited = os.environ.pop(ENV_OUTCOME, None)  # scripts we run must not see it either
    if "other" in found or "vrrp" in found:
        return  # -t, --dump-config, --list-ipvs, -P: no IPVS here
    STATE = settings = settings_from(found)
    if inherited is not None and os.environ.get(ENV_ROLE) == "check":
        OUTCOME = {**_decode(inherited), "by": "supervisor"}
        return
    if "no_fast_start" in found:
        OUTCOME = {"result": "skipped", "reason": "disabled"}
        return
    # with -I the operator keeps the table at stop: then a stop during start-up keeps it too
    OUTCOME = replay(settings, arm_undo="keep" not in found)


def summary() -> str | None:
    """The outcome in one line (``vrrpd status``), None when no replay was considered."""
    if OUTCOME is None:
        return None
    return " ".join(f"{k}={v}" for k, v in OUTCOME.items())


def child_env() -> dict[str, str]:
    """For a supervised ``-C`` child (``vrrpd.supervisor``): what our replay did, which the
    child logs instead of trying again (the table is no longer empty)."""
    return {ENV_OUTCOME: _encode(OUTCOME)} if OUTCOME is not None else {}


def settle(config: str, config_id: str, cache_dir: str | None, no_cache: bool) -> None:
    """After argparse (``vrrpd.cli``): the authoritative settings for the cache writer.  Should
    they differ from what :func:`early` read (they cannot, as it refuses any argv it does not
    fully understand), the writer is disabled for this run."""
    global STATE
    parsed = CacheSettings(config, config_id, cache_dir or DEFAULT_CACHE_DIR, not no_cache)
    if STATE is not None and not STATE.same(parsed):
        parsed.enabled = False
    STATE = parsed
