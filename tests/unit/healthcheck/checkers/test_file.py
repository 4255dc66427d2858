"""FILE_CHECK on real files."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

from healthcheck.checkers import file
from healthcheck.model import FileCheckSpec


def _spec(path: Path, **kw: object) -> FileCheckSpec:
    return FileCheckSpec(connect_ip=ip_address("127.0.0.1"), path=str(path),
                         **kw)  # type: ignore[arg-type]


async def test_weight_zero_means_up_only_at_zero(tmp_path: Path) -> None:
    f = tmp_path / "state"
    spec = _spec(f, weight=0)
    assert (await file.probe(spec)).ok  # missing file reads as 0
    f.write_text("3\n")
    res = await file.probe(spec)
    assert not res.ok and res.detail == f"{f}: value 3 (weighted 0)"
    f.write_text("0\n")
    assert (await file.probe(spec)).ok


async def test_weighted_value_and_dynamic_weight(tmp_path: Path) -> None:
    f = tmp_path / "state"
    f.write_text("5")
    spec = _spec(f, weight=2, dynamic=True)
    res = await file.probe(spec)
    assert res.ok and res.weight == 10
    f.write_text("-127")
    res = await file.probe(spec)
    assert not res.ok  # -254: down
    f.write_text("-126")
    res = await file.probe(spec)
    assert res.ok and res.weight == -252
    rev = _spec(f, weight=2, reverse=True, dynamic=True)
    f.write_text("127")
    assert not (await file.probe(rev)).ok
    f.write_text("garbage")
    res = await file.probe(rev)
    assert res.ok and res.weight == 0
    assert (await file.probe(_spec(f, weight=2))).weight is None  # not dynamic
