"""Alert mails against a real SMTP server (aiosmtpd on 127.0.0.1, random port, same event loop:
a client that blocked the loop could never be answered), plus refused/timeout/full-queue cases."""

from __future__ import annotations

import asyncio
import email
import email.utils
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.unit.vrrpd.loop_ticker import LoopTicker
from vrrpd.config.model import GlobalDefs
from vrrpd.mail import (
    Alert,
    MailAlerter,
    MailSettings,
    checker_alert,
    format_message,
    group_alert,
    quorum_alert,
    send_mail,
    vrrp_alert,
)
from vrrpd.vrrp.machine import State


@dataclass
class Received:
    helo: str | None
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    raw: bytes


@dataclass
class Recorder:
    mails: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        assert isinstance(envelope.mail_from, str)
        self.mails.append(Received(session.host_name, envelope.mail_from,
                                   list(envelope.rcpt_tos), email.message_from_bytes(raw), raw))
        self.arrived.set()
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.mails) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.mails


class NoEhloSMTP(SMTP):
    """An old server that only speaks HELO."""

    async def smtp_EHLO(self, arg: str) -> None:
        await self.push("502 5.5.1 EHLO not implemented")


async def start_server(recorder: Recorder, cls: type[SMTP] = SMTP) -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: cls(recorder, hostname="mx.test"), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Recorder, int]]:
    recorder = Recorder()
    server, port = await start_server(recorder)
    try:
        yield recorder, port
    finally:
        server.close()
        await server.wait_closed()


def settings(port: int, **kw: Any) -> MailSettings:
    base = MailSettings(recipients=("ops@example.org", "noc@example.org"),
                        sender="lb1@example.org", server="127.0.0.1", port=port,
                        helo_name="lb1.example.org", connect_timeout=5.0, router_id="lb1")
    return replace(base, **kw)


def body(m: Received) -> str:
    payload = m.message.get_payload()
    assert isinstance(payload, str)
    return payload.strip()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that never accepts nor greets: the kernel completes the TCP
    handshake, then nothing is ever said."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------------- real server


async def test_vrrp_alert_reaches_the_server_as_keepalived_writes_it(
        smtp: tuple[Recorder, int]) -> None:
    recorder, port = smtp
    alerter = MailAlerter(settings(port))
    assert alerter.alert_vrrp("VI_1", "MASTER")
    (m,) = await recorder.wait_for(1)
    assert m.helo == "lb1.example.org"
    assert m.mail_from == "lb1@example.org"
    assert m.rcpt_tos == ["ops@example.org", "noc@example.org"]
    msg = m.message
    assert msg["Subject"] == "[lb1] VRRP Instance VI_1 - Entering MASTER state"
    assert msg["From"] == "lb1@example.org"
    assert msg["X-Mailer"] == "Keepalived"
    assert [a for _, a in email.utils.getaddresses([msg["To"]])] == \
           ["ops@example.org", "noc@example.org"]
    date = email.utils.parsedate_to_datetime(msg["Date"])
    assert abs((datetime.now(UTC) - date).total_seconds()) < 60
    assert body(m) == "=> VRRP Instance is now owning VRRP VIPs <="
    assert list(msg.keys())[:4] == ["Date", "From", "Subject", "X-Mailer"]
    await alerter.drain()
    assert (alerter.sent, alerter.failed, alerter.dropped) == (1, 0, 0)
    await alerter.close()


async def test_checker_alerts_in_order_and_state_dedup(smtp: tuple[Recorder, int]) -> None:
    recorder, port = smtp
    alerter = MailAlerter(settings(port, recipients=("ops@example.org",)))
    assert alerter.alert_checker("[1.2.3.4]:tcp:80", "[10.0.0.1]:tcp:80", False)
    assert alerter.alert_checker("[1.2.3.4]:tcp:80", "[10.0.0.1]:tcp:80", True,
                                 check="HTTP_GET")
    assert alerter.alert_vrrp("VI_1", State.BACKUP)
    assert not alerter.alert_vrrp("VI_1", "BACKUP")  # same state as last mailed: no mail
    assert alerter.alert_group("G1", "FAULT")
    mails = await recorder.wait_for(4)
    await alerter.drain()
    assert [m.message["Subject"] for m in mails] == [
        "[lb1] Realserver [1.2.3.4]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN",
        "[lb1] Realserver [1.2.3.4]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - UP",
        "[lb1] VRRP Instance VI_1 - Entering BACKUP state",
        "[lb1] VRRP Group G1 - Entering FAULT state",
    ]
    assert [body(m) for m in mails] == [
        "=> TCP CHECK failed on service <=",
        "=> CHECK succeed on service <=",
        "=> VRRP Instance is no longer owning VRRP VIPs <=",
        "=> All VRRP group instances are now in FAULT state <=",
    ]
    assert alerter.sent == 4 and alerter.failed == 0
    await alerter.close()


async def test_refused_recipient_does_not_stop_the_others(smtp: tuple[Recorder, int]) -> None:
    recorder, port = smtp
    s = settings(port, recipients=("nobody@example.org", "ops@example.org"))
    refused = await send_mail(s, Alert("subject", "body"))
    assert refused == ("nobody@example.org",)
    (m,) = recorder.mails
    assert m.rcpt_tos == ["ops@example.org"]
    with pytest.raises(Exception, match="every recipient refused"):
        await send_mail(replace(s, recipients=("nobody@example.org",)), Alert("s", "b"))


async def test_helo_when_the_server_refuses_ehlo() -> None:
    recorder = Recorder()
    server, port = await start_server(recorder, NoEhloSMTP)
    try:
        await send_mail(settings(port), Alert("[lb1] old server", "=> hello <="))
        (m,) = recorder.mails
        assert m.helo == "lb1.example.org" and m.message["Subject"] == "[lb1] old server"
    finally:
        server.close()
        await server.wait_closed()


async def test_close_delivers_the_stop_mails_still_queued(smtp: tuple[Recorder, int]) -> None:
    recorder, port = smtp
    alerter = MailAlerter(settings(port))
    for name in ("VI_1", "VI_2", "VI_3"):
        alerter.alert_vrrp(name, "STOP")
    await alerter.close(timeout=10.0)
    assert [m.message["Subject"] for m in recorder.mails] == [
        f"[lb1] VRRP Instance {n} - Stopping" for n in ("VI_1", "VI_2", "VI_3")]
    assert alerter.sent == 3
    assert not alerter.alert_vrrp("VI_1", "MASTER") and alerter.dropped == 1  # closed


# ---------------------------------------------------------------------- failures


async def test_connection_refused_is_counted_without_blocking(dead_port: int) -> None:
    alerter = MailAlerter(settings(dead_port))
    t0 = time.monotonic()
    assert alerter.alert_vrrp("VI_1", "MASTER")
    assert time.monotonic() - t0 < 0.05  # queued, not sent inline
    await asyncio.wait_for(alerter.drain(), 5.0)
    assert (alerter.sent, alerter.failed) == (0, 1)
    assert alerter.last_error is not None and "ConnectionRefusedError" in alerter.last_error
    await alerter.close()


async def test_silent_server_times_out_while_the_loop_keeps_running(silent_port: int) -> None:
    alerter = MailAlerter(settings(silent_port, connect_timeout=0.5))
    t0 = time.monotonic()
    async with LoopTicker(0.01) as ticker:
        assert alerter.alert_checker("[1.2.3.4]:tcp:80", "[10.0.0.1]:tcp:80", False)
        await asyncio.wait_for(alerter.drain(), 10.0)
    gaps = ticker.gaps
    waited = time.monotonic() - t0
    assert 0.45 <= waited < 5.0  # the greeting timeout, not the 4x conversation bound
    assert alerter.failed == 1 and alerter.sent == 0
    assert alerter.last_error == "TimeoutError: greeting: no reply within 0.5 s"
    assert len(gaps) >= 20 and max(gaps) < 0.3  # the loop ran all along
    await alerter.close()


async def test_bounded_queue_drops_and_counts(silent_port: int) -> None:
    alerter = MailAlerter(settings(silent_port, connect_timeout=0.3, queue_size=2))
    results = [alerter.alert_checker(f"[1.2.3.{i}]:tcp:80", "[10.0.0.1]:tcp:80", False)
               for i in range(5)]
    assert results == [True, True, False, False, False]
    assert alerter.dropped == 3
    await asyncio.wait_for(alerter.drain(), 10.0)
    assert alerter.failed == 2 and alerter.stats().queued == 2
    await alerter.close()


async def test_close_gives_up_on_a_hung_server_and_counts_the_rest(silent_port: int) -> None:
    alerter = MailAlerter(settings(silent_port, connect_timeout=30.0))
    for i in range(3):
        alerter.alert_vrrp(f"VI_{i}", "MASTER")
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await alerter.close(timeout=0.2)
    assert time.monotonic() - t0 < 2.0
    assert alerter.dropped == 3 and alerter.sent == 0 and alerter.failed == 0


async def test_no_email_faults_skips_fault_mails_only(smtp: tuple[Recorder, int]) -> None:
    recorder, port = smtp
    alerter = MailAlerter(settings(port, no_email_faults=True))
    assert not alerter.alert_vrrp("VI_1", "FAULT")
    assert not alerter.alert_group("G1", State.FAULT)
    assert alerter.alert_vrrp("VI_1", "BACKUP")
    await alerter.close(timeout=10.0)
    assert [m.message["Subject"] for m in recorder.mails] == [
        "[lb1] VRRP Instance VI_1 - Entering BACKUP state"]


async def test_disabled_without_recipients_or_server() -> None:
    for s in (settings(25, recipients=()), settings(25, server=None)):
        alerter = MailAlerter(s)
        assert not alerter.enabled
        assert not alerter.alert_vrrp("VI_1", "MASTER")
        assert not alerter.alert_checker("[1.2.3.4]:tcp:80", "[10.0.0.1]:tcp:80", False)
        assert alerter.stats().queued == 0


# ---------------------------------------------------------------------- pure formatting


def test_settings_from_global_defs_uses_keepalived_defaults() -> None:
    s = MailSettings.from_global_defs(GlobalDefs(notification_email=("a@x",)), hostname="lb9")
    assert s.sender == "keepalived@lb9" and s.router_id == "lb9" and s.helo_name == "lb9"
    assert s.server is None and not s.enabled and s.port == 25 and s.connect_timeout == 30.0
    from ipaddress import IPv4Address

    g = GlobalDefs(notification_email=("a@x", "b@y"), notification_email_from="me@x",
                   smtp_server=IPv4Address("192.0.2.25"), smtp_port=2525,
                   smtp_connect_timeout=3.0, router_id="DIR1", smtp_helo_name="dir1.x")
    s = MailSettings.from_global_defs(g, hostname="lb9")
    assert (s.recipients, s.sender, s.server, s.port, s.connect_timeout, s.router_id,
            s.helo_name) == (("a@x", "b@y"), "me@x", "192.0.2.25", 2525, 3.0, "DIR1", "dir1.x")
    assert s.enabled
    named = MailSettings.from_global_defs(GlobalDefs(smtp_server_name="mail.x"), hostname="h")
    assert named.server == "mail.x"


def test_alert_texts() -> None:
    assert vrrp_alert("r", "VI_1", "INIT") is None
    assert vrrp_alert("r", "VI_1", State.FAULT) == Alert(
        "[r] VRRP Instance VI_1 - Entering FAULT state",
        "=> VRRP Instance is no longer owning VRRP VIPs <=")
    assert group_alert("r", "G", "MASTER") == Alert(
        "[r] VRRP Group G - Entering MASTER state",
        "=> All VRRP group instances are now in MASTER state <=")
    assert checker_alert("r", "[::1]:tcp:443", "FWM 7", False, check="SSL_GET",
                         detail="HTTP status code error").body == \
        "=> CHECK failed on service : HTTP status code error <="
    assert checker_alert("r", "a", "b", False, check="MISC_CHECK").body == \
        "=> MISC CHECK failed on service <="
    assert quorum_alert("r", "[10.0.0.1]:tcp:80", True, quorum=2, hysteresis=1,
                        weight_sum=3) == Alert("[r] Virtualserver [10.0.0.1]:tcp:80 - UP",
                                               "=> Gained quorum 2+1=3 <= 3 <=")
    assert quorum_alert("r", "v", False, quorum=2, hysteresis=1, weight_sum=0).body == \
        "=> Lost quorum 2+1=1 <= 0 <="


def test_format_message_crlf_dot_stuffing_and_truncation() -> None:
    s = settings(25)
    raw = format_message(s, Alert("x" * 400, ".leading dot\nsecond"),
                         date=datetime(2026, 11, 23, 18, 0, tzinfo=UTC))
    text = raw.decode()
    assert text.startswith("Date: Mon, 23 Nov 2026 18:00:00 +0000\r\nFrom: lb1@example.org\r\n")
    assert "\r\nSubject: " + "x" * 255 + "\r\nX-Mailer: Keepalived\r\n" in text
    assert "To: ops@example.org,\r\n noc@example.org\r\n\r\n" in text
    assert text.endswith("\r\n..leading dot\r\nsecond\r\n")
    assert "\n" not in text.replace("\r\n", "")


def test_alerts_outside_the_event_loop_are_refused_loudly() -> None:
    alerter = MailAlerter(settings(25))
    with pytest.raises(RuntimeError):
        alerter.alert_vrrp("VI_1", "MASTER")
    assert alerter.stats().queued == 0
