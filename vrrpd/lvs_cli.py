"""``vrrpd --list-ipvs``: the kernel's IPVS table of the current network namespace, printed as
``ipvsadm -L -n`` prints it (one info request and one dump)."""

from __future__ import annotations

import asyncio
from typing import TextIO

from ipvs.errors import IPVSError
from ipvs.listing import render


async def read_listing() -> str:
    from ipvs.client import IPVSClient

    async with IPVSClient() as client:
        info = await client.info()
        services = await client.dump_services()
    return render(services, version=info.version, size=info.conn_tab_size)


def list_ipvs(*, out: TextIO, err: TextIO) -> int:
    """Exit 0 with the listing; 1 with the reason when IPVS cannot be read."""
    try:
        text = asyncio.run(read_listing())
    except IPVSError as exc:
        err.write(f"vrrpd: cannot read IPVS: {exc}\n")
        return 1
    out.write(text)
    return 0
