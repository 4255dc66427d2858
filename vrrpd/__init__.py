"""vrrpd: a keepalived-compatible VRRPv2 + LVS daemon in pure Python."""

from __future__ import annotations

__version__ = "0.1.0"
