"""daemon.reload_config: parse off the loop, apply to the parts that exist, reject a broken
config (old one kept, errors recorded for `vrrpd status`), sd_notify RELOADING/READY around it."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vrrpd.daemon import reload_config
from vrrpd.status import DaemonStatus

GOOD = """global_defs {
    router_id r1
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority %d
    virtual_ipaddress {
        10.0.0.100/24
    }
}
"""


class FakePart:
    def __init__(self) -> None:
        self.applied: list[Any] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def apply_config(self, config: Any) -> None:
        self.applied.append(config)


class NoReload:
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class FakeSd:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def reloading(self, status: str | None = None) -> bool:
        self.calls.append(("RELOADING", status))
        return True

    def ready(self, status: str | None = None) -> bool:
        self.calls.append(("READY", status))
        return True


def ops() -> Any:
    return SimpleNamespace(status=DaemonStatus(config_path="x"), args=argparse.Namespace())


async def test_good_config_is_applied_to_every_part_that_can_reload(tmp_path: Path) -> None:
    path = tmp_path / "k.conf"
    path.write_text(GOOD % 150)
    vrrp, lvs, sd, o = FakePart(), FakePart(), FakeSd(), ops()
    ok = await reload_config([("lvs", lvs), ("mail", NoReload()), ("vrrp", vrrp)], str(path),
                             "host", ops=o, sd=sd)
    assert ok
    assert [c.vrrp_instances[0].priority for c in vrrp.applied] == [150]
    assert lvs.applied == vrrp.applied
    assert [k for k, _ in sd.calls] == ["RELOADING", "READY"]
    r = o.status.reloads.status()
    assert (r["succeeded"], r["failed"], r["last_result"], r["errors"]) == (1, 0, "ok", [])


async def test_unreadable_config_is_rejected_and_recorded(tmp_path: Path) -> None:
    vrrp, sd, o = FakePart(), FakeSd(), ops()
    ok = await reload_config([("vrrp", vrrp)], str(tmp_path / "missing.conf"), "host",
                             ops=o, sd=sd)
    assert not ok and vrrp.applied == []
    r = o.status.reloads.status()
    assert (r["succeeded"], r["failed"], r["last_result"]) == (0, 1, "failed")
    assert r["errors"] and "missing.conf" in r["errors"][0]
    assert sd.calls[-1][0] == "READY" and "previous configuration" in str(sd.calls[-1][1])
    # a later good reload clears the errors
    good = tmp_path / "good.conf"
    good.write_text(GOOD % 100)
    assert await reload_config([("vrrp", vrrp)], str(good), "host", ops=o, sd=sd)
    r = o.status.reloads.status()
    assert (r["succeeded"], r["failed"], r["last_result"], r["errors"]) == (1, 1, "ok", [])


async def test_a_part_failing_to_apply_is_a_failed_reload(tmp_path: Path) -> None:
    class Broken(FakePart):
        async def apply_config(self, config: Any) -> None:
            raise RuntimeError("boom")

    path = tmp_path / "k.conf"
    path.write_text(GOOD % 100)
    o = ops()
    assert not await reload_config([("vrrp", Broken())], str(path), "host", ops=o)
    assert o.status.reloads.status()["errors"] == ["vrrp: RuntimeError: boom"]


async def test_parsing_runs_off_the_event_loop(tmp_path: Path, monkeypatch: Any) -> None:
    import threading

    from vrrpd.config.incremental import IncrementalLoader

    seen: list[bool] = []
    real = IncrementalLoader.load

    def spy(self: IncrementalLoader) -> Any:
        seen.append(threading.current_thread() is threading.main_thread())
        return real(self)

    monkeypatch.setattr(IncrementalLoader, "load", spy)
    path = tmp_path / "k.conf"
    path.write_text(GOOD % 100)
    assert await reload_config([("vrrp", FakePart())], str(path), "host")
    assert seen == [False]  # in the executor, not on the loop's thread


async def test_config_with_an_error_is_rejected_and_the_old_one_kept(tmp_path: Path) -> None:
    """An unclosed block is an ERROR (keepalived would run without the bad part): a reload
    must not drop the instance it hides; the message names the file and line."""
    path = tmp_path / "k.conf"
    path.write_text(GOOD % 150 + "vrrp_instance VI_2 {\n    interface eth0\n")
    vrrp, o = FakePart(), ops()
    ok = await reload_config([("vrrp", vrrp)], str(path), "host", ops=o, sd=FakeSd())
    assert not ok
    assert vrrp.applied == []
    r = o.status.reloads.status()
    assert (r["succeeded"], r["failed"], r["last_result"]) == (0, 1, "failed")
    assert any("k.conf:" in e for e in r["errors"]), r["errors"]


async def test_a_second_reload_parses_only_the_changed_block(tmp_path: Path) -> None:
    from vrrpd.config.incremental import reloader
    from vrrpd.config.loader import load

    path = tmp_path / "k.conf"
    path.write_text(GOOD % 100)
    vrrp = FakePart()
    assert await reload_config([("vrrp", vrrp)], str(path), "host")
    path.write_text(GOOD % 120)
    assert await reload_config([("vrrp", vrrp)], str(path), "host")
    stats = reloader(str(path), "host").stats
    assert stats.mode == "incremental" and stats.reparsed_nodes == 1, stats
    assert vrrp.applied[-1] == load(path, config_id="host").config
    assert vrrp.applied[-1].vrrp_instances[0].priority == 120
