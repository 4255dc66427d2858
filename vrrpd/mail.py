"""keepalived-style alert mails (``smtp_alert``): queued, sent in the background over asyncio.

Mail is sent only when ``notification_email`` lists someone and ``smtp_server`` is set (as
keepalived).  Whether an instance, sync group, real server or virtual server mails at all is the
caller's decision: the loader already resolves every ``smtp_alert`` flag against the global
``smtp_alert``/``smtp_alert_vrrp``/``smtp_alert_checker`` defaults.

Subjects and bodies are keepalived's::

    [router_id] VRRP Instance VI_1 - Entering MASTER state
    => VRRP Instance is now owning VRRP VIPs <=
    [router_id] Realserver [1.2.3.4]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN
    => TCP CHECK failed on service <=

The message: ``Date``, ``From``, ``Subject``, ``X-Mailer: Keepalived``, ``To`` (every recipient),
blank line, body.  The conversation: greeting 220, EHLO (HELO when EHLO is refused; keepalived
sends HELO only), MAIL FROM, RCPT TO per recipient (a refused recipient is logged, the mail goes
to the others), DATA, message, ``.``, QUIT.  Every step waits at most ``smtp_connect_timeout``,
the whole conversation at most four times that.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from vrrpd.config.model import GlobalDefs

log = structlog.get_logger("vrrpd.mail")

MAX_SUBJECT = 255  # keepalived's buffers: 256 / 512 bytes with the NUL
MAX_BODY = 511

_VRRP_TEXT = {
    "MASTER": ("Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="),
    "BACKUP": ("Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    "FAULT": ("Entering FAULT state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    "STOP": ("Stopping", "=> VRRP Instance stopping <="),
}
_GROUP_TEXT = {
    "MASTER": ("Entering MASTER state", "=> All VRRP group instances are now in MASTER state <="),
    "BACKUP": ("Entering BACKUP state", "=> All VRRP group instances are now in BACKUP state <="),
    "FAULT": ("Entering FAULT state", "=> All VRRP group instances are now in FAULT state <="),
    "STOP": ("Stopping", "=> All VRRP group instances are now stopping <="),
}
# checker keyword -> the name keepalived puts in the body (HTTP/SSL/SMTP just say "CHECK")
_CHECK_NAME = {
    "TCP_CHECK": "TCP CHECK", "MISC_CHECK": "MISC CHECK", "UDP_CHECK": "UDP CHECK",
    "DNS_CHECK": "DNS CHECK", "PING_CHECK": "PING CHECK", "FILE_CHECK": "FILE CHECK",
    "HTTP_GET": "CHECK", "SSL_GET": "CHECK", "SMTP_CHECK": "CHECK",
}


@dataclass(frozen=True, slots=True)
class Alert:
    subject: str
    body: str


def _state_word(state: object) -> str:
    """Accept ``"MASTER"`` or an enum whose ``.value`` is keepalived's word (``State.MASTER``)."""
    value = getattr(state, "value", state)
    return str(value).upper()


def vrrp_alert(router_id: str, instance: str, state: object) -> Alert | None:
    """None for a state keepalived does not mail about (INIT)."""
    text = _VRRP_TEXT.get(_state_word(state))
    if text is None:
        return None
    return Alert(f"[{router_id}] VRRP Instance {instance} - {text[0]}", text[1])


def group_alert(router_id: str, group: str, state: object) -> Alert | None:
    text = _GROUP_TEXT.get(_state_word(state))
    if text is None:
        return None
    return Alert(f"[{router_id}] VRRP Group {group} - {text[0]}", text[1])


def checker_alert(router_id: str, rs: str, vs: str, up: bool, *, check: str = "TCP_CHECK",
                  detail: str | None = None, rs_up: bool | None = None) -> Alert:
    """``rs``/``vs`` as keepalived prints them (``[1.2.3.4]:tcp:80``, ``FWM 1``); ``check`` the
    checker keyword that changed the real server; ``detail`` the failure reason HTTP_GET,
    SSL_GET and SMTP_CHECK add (``connection error``, ``HTTP status code error``, ...).
    ``up`` is the checker's new state (the body); ``rs_up`` the real server's (the subject;
    default ``up``): they differ when another checker of the real server is down."""
    name = _CHECK_NAME.get(check.upper(), "CHECK")
    subject_up = up if rs_up is None else rs_up
    if up:
        body = f"=> {name} succeed on service <="
    elif detail:
        body = f"=> {name} failed on service : {detail} <="
    else:
        body = f"=> {name} failed on service <="
    return Alert(f"[{router_id}] Realserver {rs} of virtual server {vs} - "
                 f"{'UP' if subject_up else 'DOWN'}", body)


def rs_shutdown_alert(router_id: str, rs: str, vs: str) -> Alert:
    """A real server removed at shutdown (virtual server with ``omega``)."""
    return Alert(f"[{router_id}] Realserver {rs} of virtual server {vs} - DOWN",
                 "=> Shutting down <=")


def quorum_alert(router_id: str, vs: str, up: bool, *, quorum: int, hysteresis: int,
                 weight_sum: int, starting: bool = False, stopping: bool = False) -> Alert:
    """Virtual-server quorum gained/lost: ``=> Gained quorum 1+0=1 <= 2 <=`` as keepalived
    (threshold = quorum + hysteresis when gained, quorum - hysteresis when lost)."""
    subject = f"[{router_id}] Virtualserver {vs} - {'UP' if up else 'DOWN'}"
    if stopping:
        return Alert(subject, "=> Shutting down <=")
    what = ("Starting with quorum up" if starting else "Gained quorum") if up else \
        ("Starting with quorum down" if starting else "Lost quorum")
    threshold = quorum + hysteresis if up else quorum - hysteresis
    return Alert(subject, f"=> {what} {quorum}+{hysteresis}={threshold} <= {weight_sum} <=")


@dataclass(frozen=True, slots=True, kw_only=True)
class MailSettings:
    recipients: tuple[str, ...] = ()  # notification_email
    sender: str = ""  # notification_email_from ("" = keepalived@<hostname>)
    server: str | None = None  # smtp_server: address or host name (resolved off the loop)
    port: int = 25
    helo_name: str = ""  # smtp_helo_name ("" = hostname)
    connect_timeout: float = 30.0  # smtp_connect_timeout: per step
    router_id: str = ""  # "" = hostname
    queue_size: int = 64  # mails waiting; more are dropped (counted)
    no_email_faults: bool = False  # global_defs no_email_faults: no mail on entering FAULT

    @property
    def enabled(self) -> bool:
        return bool(self.recipients) and bool(self.server)

    @classmethod
    def from_global_defs(cls, g: GlobalDefs, *, hostname: str | None = None,
                         queue_size: int = 64) -> MailSettings:
        host = hostname or socket.gethostname()
        server = g.smtp_server_name or (str(g.smtp_server) if g.smtp_server else None)
        return cls(recipients=tuple(g.notification_email),
                   sender=g.notification_email_from or f"keepalived@{host}",
                   server=server, port=g.smtp_port, helo_name=g.smtp_helo_name or host,
                   connect_timeout=g.smtp_connect_timeout, router_id=g.router_id or host,
                   queue_size=queue_size, no_email_faults=g.no_email_faults)


def format_message(settings: MailSettings, alert: Alert, *, date: datetime | None = None) -> bytes:
    """The DATA payload without the final ``.`` line: CRLF line ends, dot-stuffed."""
    when = date or datetime.now().astimezone()
    to = ",\r\n ".join(settings.recipients)
    subject = " ".join(alert.subject.splitlines())[:MAX_SUBJECT]
    lines = [f"Date: {email.utils.format_datetime(when)}", f"From: {settings.sender}",
             f"Subject: {subject}", "X-Mailer: Keepalived", f"To: {to}", "",
             *alert.body[:MAX_BODY].splitlines()]
    return "".join(("." + line if line.startswith(".") else line) + "\r\n"
                   for line in lines).encode("utf-8", "replace")


class SmtpError(Exception):
    def __init__(self, step: str, code: int | None, text: str) -> None:
        super().__init__(f"{step}: {code} {text}".strip())
        self.step, self.code, self.text = step, code, text


async def _reply(reader: asyncio.StreamReader, step: str, timeout: float) -> tuple[int, str]:
    lines = []
    while True:
        try:
            raw = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{step}: no reply within {timeout:g} s") from None
        if not raw:
            raise SmtpError(step, None, "connection closed by the server")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise SmtpError(step, None, f"bad reply {line!r}")
        lines.append(line[4:])
        if line[3:4] != "-":
            return int(line[:3]), " ".join(lines)


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str,
                   step: str, timeout: float) -> tuple[int, str]:
    writer.write(line.encode("utf-8", "replace") + b"\r\n")
    await asyncio.wait_for(writer.drain(), timeout)
    return await _reply(reader, step, timeout)


def _expect(step: str, reply: tuple[int, str], *ok: int) -> None:
    if reply[0] not in ok:
        raise SmtpError(step, reply[0], reply[1])


async def send_mail(settings: MailSettings, alert: Alert, *,
                    date: datetime | None = None) -> tuple[str, ...]:
    """One SMTP conversation; returns the refused recipients.  Raises ``SmtpError``,
    ``OSError`` (refused, unreachable) or ``TimeoutError``."""
    if not settings.server:
        raise SmtpError("connect", None, "no smtp_server")
    t = settings.connect_timeout
    async with asyncio.timeout(4 * t):
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(settings.server, settings.port), t)
        except TimeoutError:
            raise TimeoutError(f"connect: no connection within {t:g} s") from None
        try:
            _expect("greeting", await _reply(reader, "greeting", t), 220)
            helo = await _command(reader, writer, f"EHLO {settings.helo_name}", "EHLO", t)
            if helo[0] != 250:
                _expect("HELO", await _command(reader, writer, f"HELO {settings.helo_name}",
                                               "HELO", t), 250)
            _expect("MAIL", await _command(reader, writer, f"MAIL FROM:<{settings.sender}>",
                                           "MAIL", t), 250)
            refused = []
            for rcpt in settings.recipients:
                code, text = await _command(reader, writer, f"RCPT TO:<{rcpt}>", "RCPT", t)
                if code not in (250, 251):
                    refused.append(rcpt)
                    log.warning("smtp_recipient_refused", recipient=rcpt, code=code, reply=text)
            if len(refused) == len(settings.recipients):
                raise SmtpError("RCPT", None, "every recipient refused")
            _expect("DATA", await _command(reader, writer, "DATA", "DATA", t), 354)
            writer.write(format_message(settings, alert, date=date) + b".\r\n")
            await asyncio.wait_for(writer.drain(), t)
            _expect("DOT", await _reply(reader, "DOT", t), 250)
            with contextlib.suppress(OSError, SmtpError, TimeoutError):
                await _command(reader, writer, "QUIT", "QUIT", t)  # the mail is already accepted
            return tuple(refused)
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


@dataclass(frozen=True, slots=True)
class MailStats:
    queued: int
    sent: int
    failed: int
    dropped: int
    last_error: str | None


@dataclass(slots=True)
class _Counters:
    queued: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_vrrp: dict[tuple[str, str], str] = field(default_factory=dict)


class MailAlerter:
    """Queue alerts from the event loop (sync calls, never block); one background task sends
    them in order.  Counters: ``sent``, ``failed`` (connection refused, timeout, SMTP error),
    ``dropped`` (queue full or closed); ``stats()`` for status/metrics."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self._c = _Counters()
        self._queue: asyncio.Queue[Alert] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_global_defs(cls, g: GlobalDefs, *, hostname: str | None = None,
                         queue_size: int = 64) -> MailAlerter:
        return cls(MailSettings.from_global_defs(g, hostname=hostname, queue_size=queue_size))

    @property
    def sent(self) -> int:
        return self._c.sent

    @property
    def failed(self) -> int:
        return self._c.failed

    @property
    def dropped(self) -> int:
        return self._c.dropped

    @property
    def last_error(self) -> str | None:
        return self._c.last_error

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def stats(self) -> MailStats:
        c = self._c
        return MailStats(c.queued, c.sent, c.failed, c.dropped, c.last_error)

    # ------------------------------------------------------------------ alerts

    def alert_vrrp(self, instance: str, state: object) -> bool:
        """An instance entered ``state`` (MASTER/BACKUP/FAULT/STOP or a ``State``).  Like
        keepalived, no second mail for the state last mailed about.  True when queued."""
        return self._alert_state("instance", instance, state,
                                 vrrp_alert(self._rid(), instance, state))

    def alert_group(self, group: str, state: object) -> bool:
        return self._alert_state("group", group, state, group_alert(self._rid(), group, state))

    def alert_checker(self, rs: str, vs: str, up: bool, *, check: str = "TCP_CHECK",
                      detail: str | None = None, rs_up: bool | None = None) -> bool:
        return self.send(checker_alert(self._rid(), rs, vs, up, check=check, detail=detail,
                                       rs_up=rs_up))

    def alert_quorum(self, vs: str, up: bool, *, quorum: int, hysteresis: int, weight_sum: int,
                     starting: bool = False, stopping: bool = False) -> bool:
        return self.send(quorum_alert(self._rid(), vs, up, quorum=quorum, hysteresis=hysteresis,
                                      weight_sum=weight_sum, starting=starting,
                                      stopping=stopping))

    def alert_rs_shutdown(self, rs: str, vs: str) -> bool:
        return self.send(rs_shutdown_alert(self._rid(), rs, vs))

    def send(self, alert: Alert) -> bool:
        """Queue any alert; must be called from the event loop thread (RuntimeError otherwise)."""
        if not self.settings.enabled:
            return False
        loop = asyncio.get_running_loop()
        if self._closed:
            self._c.dropped += 1
            return False
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=max(1, self.settings.queue_size))
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._c.dropped += 1
            log.warning("smtp_alert_dropped", reason="queue full", subject=alert.subject,
                        dropped=self._c.dropped)
            return False
        self._c.queued += 1
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._worker(self._queue), name="vrrpd-mail")
        return True

    def _rid(self) -> str:
        return self.settings.router_id or socket.gethostname()

    def _alert_state(self, kind: str, name: str, state: object, alert: Alert | None) -> bool:
        if alert is None or not self.settings.enabled:
            return False
        word = _state_word(state)
        if word == "FAULT" and self.settings.no_email_faults:
            return False
        if self._c.last_vrrp.get((kind, name)) == word:
            return False
        queued = self.send(alert)
        if queued:
            self._c.last_vrrp[(kind, name)] = word
        return queued

    # ------------------------------------------------------------------ sending

    async def _worker(self, queue: asyncio.Queue[Alert]) -> None:
        while True:
            alert = await queue.get()
            try:
                refused = await send_mail(self.settings, alert)
            except asyncio.CancelledError:
                self._c.dropped += 1  # in flight when close() gave up
                raise
            except Exception as exc:  # every failure is counted and logged, never raised
                self._c.failed += 1
                self._c.last_error = f"{type(exc).__name__}: {exc}"
                log.error("smtp_alert_failed", server=self.settings.server,
                          port=self.settings.port, subject=alert.subject,
                          error=self._c.last_error, failed=self._c.failed)
            else:
                self._c.sent += 1
                log.info("smtp_alert_sent", subject=alert.subject, server=self.settings.server,
                         refused=list(refused) or None)
            finally:
                queue.task_done()

    async def drain(self) -> None:
        """Wait until every queued mail was sent or failed."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop taking alerts, give the queue ``timeout`` seconds (e.g. the STOP mails), then
        cancel; what is left is counted as dropped."""
        self._closed = True
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._queue is not None:
            self._c.dropped += self._queue.qsize()
        self._task = None
