"""A real SMTP server for the alert tests (aiosmtpd): in-process (``SmtpSink``) or as a process
in a namespace (``python -m tests.unit.vrrpd.smtp_sink HOST PORT OUT``: one JSON line per mail
appended to OUT, ``ready`` printed once listening)."""

from __future__ import annotations

import asyncio
import email
import json
import sys
import time
from dataclasses import dataclass, field
from email.message import Message

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Mail:
    helo: str | None
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    at: float  # time.monotonic() of arrival

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        payload = self.message.get_payload()
        assert isinstance(payload, str)
        return payload.strip()


@dataclass
class SmtpSink:
    """The aiosmtpd handler: records every accepted mail."""

    mails: list[Mail] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None
    port: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.mail_from, str)
        self.mails.append(Mail(session.host_name, envelope.mail_from, list(envelope.rcpt_tos),
                               email.message_from_bytes(envelope.original_content or b""),
                               time.monotonic()))
        self.arrived.set()
        return "250 Message accepted for delivery"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(self, hostname="mx.test"), host,
                                               port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def __aenter__(self) -> SmtpSink:
        """Started on 127.0.0.1 (a free port), closed on exit."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Mail]:
        async with asyncio.timeout(timeout):
            while len(self.mails) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.mails

    def subjects(self) -> list[str]:
        return [m.subject for m in self.mails]


async def _serve(host: str, port: int, out: str) -> None:
    class Writer(SmtpSink):
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            with open(out, "a") as f:
                f.write(json.dumps({
                    "helo": session.host_name, "mail_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos), "at": time.time(),
                    "data": (envelope.original_content or b"").decode("utf-8", "replace"),
                }) + "\n")
            return "250 Message accepted for delivery"

    sink = Writer()
    await sink.start(host, port)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
