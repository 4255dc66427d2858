"""VRRPv2: codec, state machine and adapters."""

from __future__ import annotations
