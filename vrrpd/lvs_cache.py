"""Write the IPVS start cache that :mod:`vrrpd.fast_start` replays at the next cold start.

After the LVS runner's first sync programmed the whole table into a kernel table that held none
of its services (or found it exactly as :mod:`vrrpd.lvs_direct` programmed it just before),
:func:`after_initial_sync` stores the generic-netlink requests (command +
attributes, no netlink header: family id and sequence numbers are the replaying socket's)
that build the table the config wants at start, computed from that desired state with the
batch sender's own encoder (:func:`ipvs.batch.op_payload` over :func:`ipvs.reconcile.plan`
from an empty table: the very requests the runner sent), and the key they are valid for.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import time
from collections.abc import Mapping
from typing import Any

import structlog

from ipvs.batch import op_payload
from ipvs.model import ServiceKey
from ipvs.reconcile import AddService, DesiredService, plan
from vrrpd import fast_start
from vrrpd.config.inputs import ConfigInputs, last_inputs

__all__ = ["after_initial_sync", "build_requests", "cache_key", "write_cache"]

log = structlog.get_logger("lvs")


def build_requests(want: Mapping[ServiceKey, DesiredService]) -> tuple[bytes, list[bytes]]:
    """(one command byte per request, the attributes of each): the add-service / add-dest
    requests that turn an empty table into ``want``, in the runner's order."""
    cmds = bytearray()
    payloads: list[bytes] = []
    for op in plan(want, {}, ()):
        cmd, payload = op_payload(op)
        cmds.append(int(cmd))
        payloads.append(payload)
    return bytes(cmds), payloads


def cache_key(settings: fast_start.CacheSettings, inputs: ConfigInputs) -> dict[str, object]:
    return {**fast_start.base_key(settings),
            "files": [list(f) for f in inputs.files],
            "patterns": [[p, list(m)] for p, m in inputs.patterns]}


def ensure_dir(path: str) -> None:
    """The cache directory, created 0700; refused unless ours alone (fast_start.safe)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or not fast_start.safe(st):
        raise PermissionError(f"{path}: not a directory of uid {os.geteuid()} alone")


def write_cache(settings: fast_start.CacheSettings, key: dict[str, object], cmds: bytes,
                payloads: list[bytes], services: int) -> str:
    """Atomically (temporary file + rename) write the cache; returns its path."""
    ensure_dir(settings.cache_dir)
    path = settings.cache_file()
    data = marshal.dumps({"key": key, "cmds": cmds, "payloads": payloads,
                          "services": services})
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


_logged = False


def log_outcome() -> None:
    """``lvs_fast_start``: what the start-up replay did (once per process)."""
    global _logged
    if _logged or fast_start.OUTCOME is None:
        return
    _logged = True
    log.info("lvs_fast_start", **fast_start.OUTCOME)


def why_not(runner: Any, result: Any) -> str | None:
    """Why this start must not write the cache (None: write it)."""
    settings = fast_start.STATE
    if settings is None or not settings.enabled:
        return "disabled"
    if result.error is not None or result.failed:
        return "sync_failed"
    added = sum(isinstance(o, AddService) for o in result.ops)
    direct = fast_start.OUTCOME is not None and fast_start.OUTCOME.get("result") == "direct" \
        and not fast_start.OUTCOME.get("failed") and not result.ops
    if not direct and (not added or added != len(runner.owned)):
        return "table_not_empty"  # adopted services: not a cold start (or a replay worked)
    if runner.config.global_defs.lvs_flush:
        return "lvs_flush"  # the table is flushed at start: a replay would be undone
    inputs = last_inputs(settings.config, settings.config_id)
    if inputs is None or inputs.main != settings.config:
        return "config_inputs_unknown"
    if not inputs.deterministic:
        return "config_not_deterministic"
    return None


def after_initial_sync(runner: Any, result: Any) -> None:
    """Called by ``LvsRunner`` right after its first sync (checkers not started: the desired
    state is the initial one).  Never raises."""
    log_outcome()
    outcome = fast_start.OUTCOME or {}
    if outcome.get("result") in ("direct", "replayed") and result.ops:
        # the early requests and the full reader disagree (or the table changed meanwhile):
        # the sync just repaired it; a difference from lvs_direct is a bug worth reporting
        log.warning("lvs_fast_start_mismatch", how=outcome["result"], ops=len(result.ops),
                    first=repr(result.ops[0]))
    try:
        reason = why_not(runner, result)
        if reason is not None:
            log.debug("lvs_fast_start_cache", written=False, reason=reason)
            return
        settings = fast_start.STATE
        assert settings is not None
        inputs = last_inputs(settings.config, settings.config_id)
        assert inputs is not None
        started = time.monotonic()
        want = runner.desired_state()
        cmds, payloads = build_requests(want)
        path = write_cache(settings, cache_key(settings, inputs), cmds, payloads, len(want))
        log.info("lvs_fast_start_cache", written=True, path=path, requests=len(payloads),
                 seconds=round(time.monotonic() - started, 3))
    except Exception as exc:
        log.warning("lvs_fast_start_cache", written=False,
                    reason=f"{type(exc).__name__}: {exc}")
