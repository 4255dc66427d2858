"""The recording fakes, and import hygiene of the adapters (no scapy, healthcheck alone)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vrrpd.vrrp.fakes import FakeProcessRunner, ok_result

ROOT = Path(__file__).resolve().parents[4]


async def test_fake_runner_answers_in_order_then_default() -> None:
    runner = FakeProcessRunner(results=[ok_result(3)], default=ok_result(0))
    first = await runner(["a"], timeout=1, user="u")
    second = await runner(["b"], timeout=1)
    assert (first.exit_code, second.exit_code) == (3, 0)
    assert runner.calls == [(("a",), "u", None), (("b",), None, None)]
    assert ok_result(timed_out=True).timed_out and not ok_result(timed_out=True).ok


def test_adapters_do_not_import_scapy_and_healthcheck_stays_alone() -> None:
    code = (
        "import sys\n"
        "import healthcheck.process\n"
        "assert not any(m == 'vrrpd' or m.startswith('vrrpd.') for m in sys.modules), 'vrrpd'\n"
        "import vrrpd.vrrp.sockets, vrrpd.vrrp.garp, vrrpd.vrrp.addresses, vrrpd.vrrp.links\n"
        "import vrrpd.vrrp.scripts, vrrpd.vrrp.notify, vrrpd.vrrp.trackfile, vrrpd.vrrp.fakes\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('scapy', 'pyroute2')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    # pyroute2 is imported lazily, on first netlink use; scapy never.
    assert out.stdout.strip() == "[]"
