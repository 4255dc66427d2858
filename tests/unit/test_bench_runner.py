"""tests/bench/run_all.py: BENCH line collection, FAILED rows, the table; and one real run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.bench import run_all
from tests.bench.bench_line import emit
from tests.bench.run_all import Outcome, Row, collect, format_markdown, format_table, parse_lines

REPO = Path(__file__).resolve().parents[2]

GOOD = [
    "some human line",
    'BENCH {"figure": "parse (wall)", "unit": "ms", "vrrpd": 50.0, "keepalived": 200.0}',
    'BENCH {"keepalived": [{"cold": 1.0}], "vrrpd": [{"cold": 2.0}]}',  # no figure: ignored
    "BENCH {not json",
    'BENCH {"figure": "codec", "unit": "us", "vrrpd": 20, "keepalived": 400,'
    ' "baseline": "scapy", "note": "scapy only dissects"}',
    'BENCH {"figure": "cpu", "unit": "%", "vrrpd": 3.0, "keepalived": null,'
    ' "error": "keepalived skipped: no IPVS"}',
]


def test_parse_lines_keeps_only_figure_records() -> None:
    rows = parse_lines("b", GOOD)
    assert [r.figure for r in rows] == ["parse (wall)", "codec", "cpu"]
    assert rows[0] == Row("b", "parse (wall)", "ms", 50.0, 200.0)
    assert rows[0].ratio == pytest.approx(0.25) and not rows[0].failed
    assert rows[1].baseline == "scapy" and rows[1].ratio == pytest.approx(0.05)
    assert rows[2].failed and rows[2].ratio is None
    assert rows[2].reason == "keepalived skipped: no IPVS"


def test_missing_side_or_zero_baseline() -> None:
    row = parse_lines("b", ['BENCH {"figure": "f", "unit": "s", "vrrpd": 1.0}'])[0]
    assert row.failed and row.reason == "no keepalived figure"
    zero = Row("b", "f", "ms", 0.5, 0.0)
    assert not zero.failed and zero.ratio is None
    assert Row("b", "f", "ms", -0.2, 1.0).ratio is None  # signed lateness: no ratio
    assert Row("b", "f", "ms", 0.0, 2.0).ratio == 0.0


def test_collect_adds_a_failed_row_for_a_failing_script() -> None:
    ok = collect("b", Outcome(0, "\n".join(GOOD)))
    assert len(ok) == 3 and not any(r.figure == "(script)" for r in ok)
    crashed = collect("b", Outcome(1, GOOD[1] + "\nTraceback ...\nRuntimeError: boom\n"))
    assert crashed[-1].failed and crashed[-1].reason == "exit 1: RuntimeError: boom"
    assert crashed[0].figure == "parse (wall)"  # what it printed before failing is kept
    silent = collect("b", Outcome(0, "nothing machine-readable\n"))
    assert [r.reason for r in silent] == ["printed no BENCH line"]
    slow = collect("b", Outcome(None, "", timeout=120))
    assert [r.reason for r in slow] == ["timed out after 120 s"]


def test_table_and_markdown() -> None:
    rows = collect("b", Outcome(0, "\n".join(GOOD)))
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["figure", "unit", "vrrpd", "keepalived", "ratio",
                                "vrrpd/keepalived"]
    parse = next(x for x in lines if "b: parse (wall)" in x)
    assert parse.split()[-4:] == ["ms", "50.0", "200", "0.25x"]
    assert "400 (scapy)" in table and "0.05x" in table
    assert "FAILED: keepalived skipped: no IPVS" in table
    assert "  b: scapy only dissects" in table.split("notes:")[1]
    md = format_markdown(rows)
    assert "| b: parse (wall) | ms | 50.0 | 200 | 0.25x |  |" in md


def test_write_out_and_json(tmp_path: Path) -> None:
    rows = collect("b", Outcome(2, GOOD[1]))
    md, js = run_all.write_out(tmp_path / "res", rows, {"quick": True})
    doc = json.loads(js.read_text())
    assert doc["failed"] is True and doc["quick"] is True
    assert doc["rows"][0]["ratio"] == pytest.approx(0.25)
    assert doc["rows"][1]["reason"].startswith("exit 2")
    assert md.read_text().startswith("## vrrpd vs keepalived")


def test_emit_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    emit("takeover", "ms", 1.5, float("nan"), note="n", error="keepalived crashed")
    emit("rate", "1/s", 10.0, 5.0, better="higher", baseline="scapy")
    rows = parse_lines("x", capsys.readouterr().out.splitlines())
    assert rows[0] == Row("x", "takeover", "ms", 1.5, None, "keepalived", "n",
                          "keepalived crashed")
    assert rows[1].baseline == "scapy" and rows[1].ratio == pytest.approx(2.0)


def test_select_only() -> None:
    assert [b.name for b in run_all.select(["vrrp_codec,takeover"])] == ["vrrp_codec",
                                                                         "takeover"]
    assert len(run_all.select([])) == len(run_all.BENCHES)
    with pytest.raises(SystemExit):
        run_all.select(["nope"])
    for b in run_all.BENCHES:
        assert (REPO / "tests" / "bench" / b.script).is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="scripts/bench sources setup.sh (root)")
def test_scripts_bench_quick_codec_end_to_end(tmp_path: Path) -> None:
    """The real command: one bench subprocess, its table, the files; ~6 s."""
    proc = subprocess.run([str(REPO / "scripts" / "bench"), "--quick", "--only", "vrrp_codec",
                           "--out", str(tmp_path / "bench")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[vrrp_codec] vrrpd codec" in proc.stderr
    row = next(x for x in proc.stdout.splitlines() if x.startswith("vrrp_codec: "))
    assert "(scapy)" in row and row.rstrip().endswith("x")
    doc = json.loads((tmp_path / "bench.json").read_text())
    (only,) = doc["rows"]
    assert only["vrrpd"] > 0 and only["keepalived"] > 0 and not doc["failed"]
