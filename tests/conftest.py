"""Test tiers: unit (always), netns (root + namespaces), kernel (inside the QEMU guest)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests assert behaviour, not speed: on a loaded 2-core CI machine hypothesis's per-example
# deadline (200 ms) turns scheduling noise into failures.  Speed is measured in tests/bench.
settings.register_profile(
    "vrrpd", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "vrrpd"))

# Kernel tier: tests/guest/ boots one QEMU guest per session for @pytest.mark.kernel items and
# provides their fixtures (ipvs_modules, ipvs_ns, netns_factory).  Imported as `guest.*` only.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
pytest_plugins = ("guest.plugin", "guest.fixtures")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    has_ip = shutil.which("ip") is not None
    skip_netns = pytest.mark.skip(
        reason="netns tier needs root and iproute2 (run scripts/test as root)"
    )
    for item in items:
        if "netns" in item.keywords and not (is_root and has_ip):
            item.add_marker(skip_netns)
