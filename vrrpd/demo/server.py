"""A tiny TCP/HTTP service that answers with its own name (stands in for MyCAT on port 8066).

Run inside a namespace: ``python -m vrrpd.demo.server NAME [--port 8066]``.  An HTTP request
(``GET ...``) gets an HTTP/1.0 200 with the name as the body; anything else gets ``NAME\\n``.
A connection that sends nothing (a TCP_CHECK probe) is simply closed.  Prints ``listening``
once bound; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

DEFAULT_PORT = 8066


def reply_for(name: str, request: bytes) -> bytes:
    """The bytes sent back for ``request`` (the first line or chunk the client sent)."""
    body = f"{name}\n".encode()
    if request.startswith((b"GET ", b"HEAD ")):
        head = (
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        return head if request.startswith(b"HEAD ") else head + body
    return body


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a connection, ignoring a peer that already reset it."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def handle(name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await asyncio.wait_for(reader.read(4096), timeout=5.0)
        if request:
            writer.write(reply_for(name, request))
            await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        await close_quietly(writer)


async def serve(name: str, port: int, host: str = "0.0.0.0") -> None:
    server = await asyncio.start_server(
        lambda r, w: handle(name, r, w), host, port, reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"{name}: listening on {host}:{port}", flush=True)
    async with server:
        await stop.wait()
    print(f"{name}: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vrrpd.demo.server", description=__doc__)
    p.add_argument("name")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = p.parse_args(argv)
    asyncio.run(serve(args.name, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
