"""A real server for the LVS-DR end-to-end tests: short HTTP requests AND long-lived connections.

Run inside a namespace: ``python tests/kernel/e2e_server.py NAME [--port 8066]``.

- A connection whose first line is an HTTP request gets the demo's answer
  (``vrrpd.demo.server.reply_for``: HTTP/1.0 200, body = NAME) and is closed.
- A connection that sends nothing (a TCP_CHECK probe) is closed.
- Any other first line starts a long-lived "line" session: every line ``L`` is answered with
  ``NAME L`` until the client closes.  The failover tests keep such sessions open across a
  director takeover: the answer names the real server that kept the connection.

Each connection is logged on stdout as ``<CLOCK_MONOTONIC> <peer ip>:<port> http|line|empty``
and its stop as ``<CLOCK_MONOTONIC> NAME: stopped`` (the guest's monotonic clock is shared by
every process, so the tests compare these times with their own).  SIGTERM stops it: the
listener closed, the stop logged, the process gone at once (open sessions closed by the kernel).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

from vrrpd.demo.server import close_quietly, reply_for


def log(peer: object, kind: str) -> None:
    host, port = peer if isinstance(peer, tuple) else ("?", 0)
    print(f"{time.monotonic():.3f} {host}:{port} {kind}", flush=True)


async def handle(name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    try:
        # long: a test's quiet connection must not be closed by us (our FIN's ACK would be a
        # third packet through the director)
        first = await asyncio.wait_for(reader.readline(), timeout=600.0)
        if not first:
            log(peer, "empty")
        elif first.startswith((b"GET ", b"HEAD ")):
            log(peer, "http")
            writer.write(reply_for(name, first))
            await writer.drain()
        else:
            log(peer, "line")
            line = first
            while line:
                writer.write(f"{name} ".encode() + line.rstrip(b"\r\n") + b"\n")
                await writer.drain()
                line = await reader.readline()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        await close_quietly(writer)


async def serve(name: str, port: int) -> None:
    server = await asyncio.start_server(lambda r, w: handle(name, r, w), "0.0.0.0", port,
                                        reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"{name}: listening on 0.0.0.0:{port}", flush=True)
    await stop.wait()
    server.close()  # the listener is gone: new connections are refused from here on
    print(f"{time.monotonic():.3f} {name}: stopped", flush=True)
    os._exit(0)  # at once (a Python shutdown takes ~1 s under TCG); the kernel closes the rest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("name")
    p.add_argument("--port", type=int, default=8066)
    args = p.parse_args(argv)
    asyncio.run(serve(args.name, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
