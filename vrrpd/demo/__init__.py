"""``vrrpd demo``: the seed 000 LVS-DR cluster (two vrrpd directors, two real servers, a
client) built in network namespaces, with a narrated election, failover and real-server loss.

Run ``./scripts/demo`` (or ``python -m vrrpd.demo``).  Where the host kernel has no IPVS the
demo re-runs itself inside a QEMU guest (``vrrpd.demo.guest``).
"""

from __future__ import annotations
