"""The demo's service and client over real loopback sockets, and the failover-gap arithmetic."""

from __future__ import annotations

import asyncio
import socket

from vrrpd.demo.client import Answer, gap_around, request, tally
from vrrpd.demo.server import reply_for, serve


def test_reply_names_the_server() -> None:
    http = reply_for("mycat01", b"GET / HTTP/1.0\r\n\r\n")
    assert http.startswith(b"HTTP/1.0 200 OK\r\n") and http.endswith(b"\r\n\r\nmycat01\n")
    assert reply_for("mycat01", b"hello\n") == b"mycat01\n"
    assert b"mycat01" not in reply_for("mycat01", b"HEAD / HTTP/1.0\r\n\r\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_client_gets_the_name_from_a_live_server() -> None:
    port = _free_port()
    task = asyncio.create_task(serve("mycat02", port, host="127.0.0.1"))
    try:
        for _ in range(100):
            answer = await asyncio.to_thread(request, "127.0.0.1", port, timeout=1.0)
            if answer.ok:
                break
            await asyncio.sleep(0.02)
        assert answer.server == "mycat02" and answer.error is None
        # a TCP_CHECK-style probe (connect, send nothing, close) leaves the server serving
        probe = socket.create_connection(("127.0.0.1", port))
        probe.close()
        again = await asyncio.to_thread(request, "127.0.0.1", port)
        assert again.server == "mycat02"
    finally:
        task.cancel()
    refused = await asyncio.to_thread(request, "127.0.0.1", _free_port(), timeout=1.0)
    assert not refused.ok and refused.error


def _a(start: float, ok: bool, server: str = "s") -> Answer:
    return Answer(start, start + 0.01, server if ok else None, None if ok else "timed out")


def test_gap_spans_last_answer_before_to_first_after() -> None:
    answers = [_a(0.0, True), _a(1.0, True, "old"), _a(1.5, False), _a(2.0, False),
               _a(5.0, True, "new"), _a(5.5, True, "new")]
    gap = gap_around(answers, at=1.2)
    assert gap.last_before == answers[1] and gap.first_after == answers[4]
    assert gap.failed == 2
    assert gap.seconds is not None and abs(gap.seconds - 4.0) < 1e-9
    assert tally(answers) == {"s": 1, "old": 1, "new": 2, "(failed)": 2}


def test_gap_unknown_when_never_answered_again() -> None:
    gap = gap_around([_a(0.0, True), _a(1.0, False)], at=0.5)
    assert gap.first_after is None and gap.seconds is None and gap.failed == 1
