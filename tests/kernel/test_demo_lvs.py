"""The whole demo inside the guest (IPVS): election, ipvsadm -L on the master, round-robin over
the real servers, failover with a client asking every 50 ms, a real server leaving the pool."""

from __future__ import annotations

import io

import pytest

from vrrpd.demo.report import Reporter
from vrrpd.demo.script import Options, run_demo

pytestmark = pytest.mark.kernel

MASTER_DOWN = 3 + (256 - 99) / 256  # dir2: priority 99, advert_int 1


def test_lvs_dr_demo_end_to_end(ipvs_modules: tuple[str, ...]) -> None:
    assert "rr" in ipvs_modules
    out = io.StringIO()
    result = run_demo(Reporter(out), Options(vrrp_only=False, slow=4.0))
    text = out.getvalue()
    assert result.master == "dir1", text
    assert result.spread == {"mycat01": 10, "mycat02": 10}, text  # rr, no persistence
    assert set(result.after_failover) == {"mycat01", "mycat02"}, text
    assert result.takeover_seconds is not None
    assert MASTER_DOWN - 1.0 <= result.takeover_seconds <= MASTER_DOWN + 4.0, text
    assert result.gap_seconds is not None and result.gap_seconds <= MASTER_DOWN + 5.0, text
    # TCP_CHECK: first failure within delay_loop (6 s), then retry 1 (the seed's nb_get_retry 3
    # is ignored, as keepalived 2.2.7 ignores it) after delay_before_retry 3 s
    assert result.detect_seconds is not None and 2.5 <= result.detect_seconds <= 30.0, text
    assert result.after_rs_stop == {"mycat02": 10}, text
