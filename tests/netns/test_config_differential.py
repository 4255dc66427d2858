"""Differential test: ``vrrpd -t`` against Debian's keepalived 2.2.7 ``keepalived -t``.

Both tools check every config of ``config_corpus/`` (and the shipped ``etc/*.conf``) inside a
throw-away network namespace that has the interfaces the configs name.  For each config they
must agree on "would run" (keepalived exit 0/5/6) versus "cannot run" (exit 4, or no clean exit
at all), and both must report a problem where either does (keepalived prints its complaints,
vrrpd its diagnostics; a vrrpd warning counts as a report, except the notes about vrrpd
itself -- "'x' is parsed but not acted on yet by vrrpd" -- which say nothing about the config).

The first line of every corpus file records what keepalived 2.2.7 did with it when the corpus
was written; the test checks the live keepalived still does that, so the corpus keeps
exercising what it claims to.  Deliberate differences are listed in ``DIFFERENCES`` with their
reason; behaviour the typed model does not have yet is listed in ``PENDING`` (strict xfail).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "config_corpus"
CASES = sorted(CORPUS.glob("*.conf")) + sorted((ROOT / "etc").glob("*.conf"))
INTERFACES = ("eth0", "eth1", "eth2", "eno16777736", "ens33")
CONFIG_ID = "csid"
KEEPALIVED_TIMEOUT = 8.0
# vrrpd's notes about its own coverage (a keyword it parses but does not act on yet).
CAPABILITY_NOTE = re.compile(r"(not|only partly) acted on (yet )?by vrrpd")
KEEPALIVED_LINE = re.compile(r"\(([^():]+): Line (\d+)\)")
HEADER = re.compile(r"# keepalived 2\.2\.7 -t: (exit (\d+)|crashes \(SIGSEGV\)|does not finish)")

# config -> why vrrpd deliberately differs from keepalived 2.2.7 on "would run".
DIFFERENCES: dict[str, str] = {
    "bad-unterminated-quote-script.conf":
        "keepalived 2.2.7 crashes (SIGSEGV) on an unterminated quote inside a vrrp_script block; "
        "vrrpd reports the quote (file:line:col) and drops the script",
    "bad-recursive-definition.conf":
        "keepalived 2.2.7 loops forever on $A=$B / $B=$A; vrrpd stops the expansion after "
        "50 levels with an error naming the line",
    "bad-debug-without-level.conf":
        "keepalived 2.2.7 aborts (exit 2) on 'debug' without a level, a keyword keepalived 1.x "
        "configs (seed 001) use bare; vrrpd accepts it with a 'not acted on' warning",
    "seed001-haproxy-master.conf":
        "the seed's bare 'debug' (keepalived 1.x syntax): keepalived 2.2.7 aborts with exit 2, "
        "vrrpd accepts it with a warning",
    "bad-linkbeat-unknown-interface.conf":
        "vrrpd does not implement linkbeat_interfaces (it warns that the block is not acted "
        "on), so an unknown interface there cannot stop it; keepalived exits 4",
}

# config -> behaviour the typed model (vrrpd.config.loader) does not have yet.  Strict:
# a case listed here that starts to agree fails until it is removed from the list.
PENDING: dict[str, str] = {}


# config -> why a line keepalived complains about carries no vrrpd diagnostic (the config as a
# whole is still reported by both).  Strict as well: an entry that no longer misses fails.
LINE_EXCEPTIONS: dict[str, str] = {
    "bad-unknown-top-level.conf":
        "vrrpd ignores an unknown block as a whole with one warning on its first line; "
        "keepalived skips only the '{' and then complains about every line inside",
    "bad-unclosed-block-middle.conf":
        "vrrpd reports the stray block inside virtual_ipaddress once, on its first line; "
        "keepalived parses each following line as an address and complains about each",
    "bad-seq-block-one-line.conf":
        "keepalived 2.2.7 treats the '}' after a ~SEQ line as unknown (line 7); vrrpd reports "
        "the misplaced block on the ~SEQ line itself",
}


@dataclass(frozen=True)
class Outcome:
    runs: bool
    complained: bool  # reported a problem with the config
    detail: str
    said_anything: bool = False  # any diagnostic at all, notes about vrrpd included
    lines: frozenset[int] = frozenset()  # lines of the checked file a complaint names


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("keepalived") is None:
        pytest.skip("needs root, iproute2 and keepalived")
    name = f"cs{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ip = ["ip", "-n", name]
        subprocess.run([*ip, "link", "set", "lo", "up"], check=True)
        for i, ifname in enumerate(INTERFACES):
            subprocess.run([*ip, "link", "add", ifname, "type", "veth", "peer", "name",
                            f"csp{i}"], check=True)
            subprocess.run([*ip, "link", "set", ifname, "up"], check=True)
            subprocess.run([*ip, "link", "set", f"csp{i}", "up"], check=True)
            subprocess.run([*ip, "addr", "add", f"10.{i}.0.1/24", "dev", ifname], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


_VRRPD_SCRIPT = """
import json, sys
from vrrpd.config.check import exit_code, format_diagnostic, load_for_check
out = {}
for path in sys.argv[2:]:
    _config, diags = load_for_check(path, config_id=sys.argv[1])
    out[path] = {"code": exit_code(diags),
                 "diags": [(d.severity.name, d.message, format_diagnostic(d), d.pos.file,
                            d.pos.line) for d in diags]}
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def vrrpd_outcomes(netns: str) -> dict[str, Outcome]:
    """``vrrpd -t`` logic over every case, in one Python process inside the namespace."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", _VRRPD_SCRIPT, CONFIG_ID,
         *map(str, CASES)], capture_output=True, text=True, env=env, timeout=300, check=True)
    result = json.loads(proc.stdout)
    return {Path(p).name: Outcome(
        runs=r["code"] != 4,
        complained=any(sev != "WARNING" or not CAPABILITY_NOTE.search(msg)
                       for sev, msg, *_ in r["diags"]),
        detail=f"exit {r['code']}\n" + "\n".join(d[2] for d in r["diags"]),
        said_anything=bool(r["diags"]),
        lines=frozenset(line for sev, msg, _t, file, line in r["diags"]
                        if Path(file).name == Path(p).name
                        and (sev != "WARNING" or not CAPABILITY_NOTE.search(msg))))
        for p, r in result.items()}


def keepalived_outcome(netns: str, path: Path) -> tuple[Outcome, str]:
    """(outcome, header text) of ``keepalived -t`` on ``path`` inside the namespace."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "keepalived", "-t", "-i", CONFIG_ID, "-f", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        cwd=path.parent, start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=KEEPALIVED_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: nothing it forked survives
        proc.communicate()
        return Outcome(False, True, "did not finish"), "does not finish"
    output = "\n".join(dict.fromkeys(stdout.splitlines()))[:3000]
    rc = proc.returncode
    if rc in (-11, 139):
        return Outcome(False, True, f"crashed\n{output}"), "crashes (SIGSEGV)"
    # 0 ok, 5 errors but would run, 6 script-security problem (runs, scripts disabled);
    # 4 cannot run; anything else (2: aborted while parsing) did not run either.
    runs = rc in (0, 5, 6)
    lines = frozenset(int(m.group(2)) for m in KEEPALIVED_LINE.finditer(output)
                      if Path(m.group(1)).name == path.name)
    return (Outcome(runs, bool(output.strip()) or rc != 0, f"exit {rc}\n{output}", lines=lines),
            f"exit {rc}")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_vrrpd_agrees_with_keepalived(path: Path, netns: str,
                                      vrrpd_outcomes: dict[str, Outcome]) -> None:
    theirs, header = keepalived_outcome(netns, path)
    if path.parent == CORPUS:
        first = path.read_text().splitlines()[0]
        m = HEADER.match(first)
        assert m, f"{path.name}: first line must record keepalived's measured behaviour"
        assert m.group(1).startswith(header), (
            f"keepalived no longer behaves as recorded: {first!r}, now {header}")
    ours = vrrpd_outcomes[path.name]
    report = f"keepalived: {theirs.detail}\n---\nvrrpd: {ours.detail}"
    agree = theirs.runs == ours.runs and theirs.complained == ours.complained
    if path.name in DIFFERENCES:
        assert not agree, f"{path.name} agrees now: remove it from DIFFERENCES\n{report}"
        assert ours.said_anything or not theirs.complained, f"vrrpd is silent\n{report}"
        return
    if path.name in PENDING:
        if agree:
            pytest.fail(f"{path.name} passes now: remove it from PENDING\n{report}")
        pytest.xfail(PENDING[path.name])
    assert theirs.runs == ours.runs, f"would-run differs\n{report}"
    assert theirs.complained == ours.complained, f"only one tool reports a problem\n{report}"
    missed = sorted(theirs.lines - ours.lines)
    if path.name in LINE_EXCEPTIONS:
        assert missed, f"{path.name}: every line is reported now: remove it from " \
                       f"LINE_EXCEPTIONS\n{report}"
    else:
        assert not missed, f"keepalived complains about line(s) {missed}, vrrpd does not\n{report}"


def test_corpus_covers_the_brief() -> None:
    names = [p.name for p in CORPUS.glob("*.conf")]
    assert len(names) >= 60
    for prefix in ("valid-", "lex-", "bad-"):
        assert sum(n.startswith(prefix) for n in names) >= 10, prefix
