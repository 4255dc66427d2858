"""smtp_alert end to end, against REAL SMTP servers started by the test.

- VRRP: a real vrrpd process in a namespace becomes MASTER -> keepalived's mails (subject, From,
  To, X-Mailer, envelope) arrive at an aiosmtpd server running in another namespace of the same
  lab; SIGTERM -> the "Stopping" mail still goes out before the process exits.
- SMTP server that accepts and never answers: vrrpd takes over on time, answers its control
  socket at once, counts and logs the failures, and stops promptly.
- Checkers: this host's kernel has no IPVS, so the checker path runs at the LvsRunner level
  (the fake IPVS kernel of the unit tests) with a real TCP listener stopped and restarted and a
  real SMTP server -- composed exactly as ``vrrpd.daemon.build_runners`` does.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from email.message import Message
from functools import partial
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from tests.netns.confs import instance, master_down
from tests.netns.lab import REPO, Host, Lab, Proc, wait_until
from tests.unit.vrrpd.ipvs_fake_kernel import FakeKernel
from tests.unit.vrrpd.loop_ticker import LoopTicker
from tests.unit.vrrpd.smtp_sink import SmtpSink
from vrrpd.alerts import MailPart
from vrrpd.config.loader import load_text
from vrrpd.control import request
from vrrpd.lvs import LvsRunner, default_checkers

pytestmark = pytest.mark.netns

MX_IP, MX_PORT = "10.77.0.9", 2525
VIP = "10.77.0.100"
RECIPIENTS = ["ops@example.org", "noc@example.org"]


@pytest.fixture
def lab_prefix() -> str:
    return "ml"


def mail_conf(*blocks: str, timeout: int = 3) -> str:
    return ("global_defs {\n"
            "    notification_email {\n" + "".join(f"        {r}\n" for r in RECIPIENTS)
            + "    }\n"
            f"    notification_email_from lb1@example.org\n"
            f"    smtp_server {MX_IP} {MX_PORT}\n"
            f"    smtp_connect_timeout {timeout}\n"
            f"    router_id LB1\n"
            f"    smtp_alert_vrrp\n"
            f"}}\n" + "".join(blocks))


def start_python(lab: Lab, host: Host, code_or_module: list[str], name: str) -> Proc:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = lab.spawn(host, [sys.executable, *code_or_module], name, env=env)
    wait_until(lambda: "ready" in proc.output() or not proc.alive(), 20, what=f"{name} ready")
    assert proc.alive(), proc.output()
    return proc


def read_mails(path: Path) -> list[tuple[dict[str, Any], Message]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out.append((rec, email.message_from_string(rec["data"])))
    return out


def subjects(path: Path) -> list[str]:
    return [str(m["Subject"]) for _, m in read_mails(path)]


def status(ctl: Path) -> dict[str, Any]:
    reply = request(ctl, {"cmd": "status"}, timeout=5.0)
    assert reply["ok"], reply
    doc: dict[str, Any] = reply["status"]
    return doc


def test_master_and_stop_mails_reach_a_real_smtp_server(lab: Lab) -> None:
    r1, mx = lab.add_host("r1", 1), lab.add_host("mx", 9)
    box = lab.tmp / "mailbox.jsonl"
    start_python(lab, mx, ["-m", "tests.unit.vrrpd.smtp_sink", MX_IP, str(MX_PORT), str(box)],
                 "smtp")
    ctl = lab.tmp / "ctl"
    conf = mail_conf(instance("VI_1", vrid=51, priority=200, vips=[f"{VIP}/24"]))
    vrrpd = lab.vrrpd(r1, conf, "--control-socket", str(ctl))
    wait_until(lambda: r1.has_ip(VIP), master_down(200) + 20, what="VIP on r1")
    want = ["[LB1] VRRP Instance VI_1 - Entering BACKUP state",
            "[LB1] VRRP Instance VI_1 - Entering MASTER state"]
    wait_until(lambda: subjects(box) == want, 10, what=f"two mails, got {subjects(box)}")
    for rec, msg in read_mails(box):
        assert rec["mail_from"] == "lb1@example.org"
        assert rec["rcpt_tos"] == RECIPIENTS
        assert msg["From"] == "lb1@example.org"
        assert [a.strip() for a in str(msg["To"]).split(",")] == RECIPIENTS
        assert msg["X-Mailer"] == "Keepalived"
        assert email.utils.parsedate_to_datetime(str(msg["Date"])) is not None
    _, master = read_mails(box)[1]
    assert str(master.get_payload()).strip() == "=> VRRP Instance is now owning VRRP VIPs <="
    doc = status(ctl)
    assert doc["mail"] == {"sent": 2, "failed": 0, "dropped": 0, "last_error": None}
    takeover = doc["instances"][0]["last_transition"] - doc["daemon"]["started_at"]
    assert takeover < master_down(200) + 3, takeover  # mail did not delay the takeover

    assert vrrpd.stop(timeout=15) == 0
    assert not r1.has_ip(VIP)
    assert subjects(box)[2:] == ["[LB1] VRRP Instance VI_1 - Stopping"]  # sent before exit
    _, stop = read_mails(box)[2]
    assert str(stop.get_payload()).strip() == "=> VRRP Instance stopping <="


def test_a_silent_smtp_server_is_counted_logged_and_never_blocks_the_loop(lab: Lab) -> None:
    """smtp_connect_timeout 10 and a server that never greets: every mail hangs 10 s.  A loop
    blocked by mail would take over >= 10 s late, not answer its control socket, and need ~20 s
    to stop (the MASTER mail in flight, then the Stopping mail).  Takeover is measured against
    the daemon's own clock (status ``started_at`` / ``last_transition``) so a slow interpreter
    start on a loaded machine does not count."""
    r1, mx = lab.add_host("r1", 1), lab.add_host("mx", 9)
    # accepts TCP connections (the kernel does the handshake) and never says a word
    start_python(lab, mx, ["-c", (
        "import socket, time\n"
        f"s = socket.socket(); s.bind(({MX_IP!r}, {MX_PORT})); s.listen(16)\n"
        "print('ready', flush=True)\n"
        "time.sleep(3600)\n")], "silent-smtp")
    ctl = lab.tmp / "ctl"
    conf = mail_conf(instance("VI_1", vrid=51, priority=200, vips=[f"{VIP}/24"]), timeout=10)
    vrrpd = lab.vrrpd(r1, conf, "--control-socket", str(ctl))
    wait_until(lambda: r1.has_ip(VIP), master_down(200) + 20, what="VIP on r1")
    t0 = time.monotonic()
    doc = status(ctl)  # the BACKUP mail is still waiting for its greeting
    assert time.monotonic() - t0 < 2.0
    (inst,) = doc["instances"]
    assert inst["state"] == "MASTER" and doc["mail"]["failed"] == 0
    takeover = inst["last_transition"] - doc["daemon"]["started_at"]
    assert takeover < master_down(200) + 3, takeover
    wait_until(lambda: status(ctl)["mail"]["failed"] >= 1, 25, what="first mail failed")
    mail = status(ctl)["mail"]
    assert mail["sent"] == 0 and (mail["last_error"] or "").startswith("TimeoutError")
    t0 = time.monotonic()
    assert vrrpd.stop(timeout=30) == 0
    assert time.monotonic() - t0 < 15  # the queue is given 5 s, then dropped
    failures = [json.loads(line) for line in vrrpd.output().splitlines()
                if line.startswith("{") and '"smtp_alert_failed"' in line]
    assert failures and failures[0]["subject"] == \
        "[LB1] VRRP Instance VI_1 - Entering BACKUP state"
    assert failures[0]["server"] == MX_IP and failures[0]["port"] == MX_PORT
    assert failures[0]["error"] == "TimeoutError: greeting: no reply within 10 s"


# ---------------------------------------------------------------------- checkers (LvsRunner)


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as s:
        yield s


def lvs_conf(smtp_port: int, rs_port: int) -> str:
    return f"""
global_defs {{
    notification_email {{
        ops@example.org
    }}
    notification_email_from lb1@example.org
    smtp_server 127.0.0.1 {smtp_port}
    smtp_connect_timeout 2
    router_id LB1
    smtp_alert_checker
}}
virtual_server 10.0.0.1 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 {rs_port} {{
        weight 2
        TCP_CHECK {{
            connect_timeout 1
            retry 0
            warmup 0
        }}
    }}
}}
"""


async def _listen(port: int = 0) -> asyncio.Server:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    return await asyncio.start_server(handler, "127.0.0.1", port, reuse_address=True)


def in_ipvs(kernel: FakeKernel, port: int) -> bool:
    return any(d.dest.key.addr == ip_address("127.0.0.1") and d.dest.key.port == port
               for svc in kernel.table.values() for d in svc.dests)


async def wait_async(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_real_server_down_and_up_mail_through_the_lvs_runner(sink: SmtpSink) -> None:
    server = await _listen()
    port = server.sockets[0].getsockname()[1]
    result = load_text(lvs_conf(sink.port, port))
    config = result.config
    kernel = FakeKernel()
    part = MailPart(config)
    runner: Any = None
    checks = part.checkers(lambda: runner.config)  # as build_runners composes it
    runner = LvsRunner(config, client_factory=lambda: kernel,
                       checker_manager=partial(default_checkers, on_event=checks.on_event),
                       sync_interval=0.5)
    vs, rs = "[10.0.0.1]:tcp:80", f"[127.0.0.1]:tcp:{port}"
    await runner.start()
    try:
        await sink.wait_for(1)
        assert in_ipvs(kernel, port)
        server.close()
        await server.wait_closed()
        t_down = time.monotonic()
        await sink.wait_for(3, timeout=10)
        await wait_async(lambda: not in_ipvs(kernel, port), 5, "real server out of IPVS")
        server = await _listen(port)
        await sink.wait_for(5, timeout=10)
        await wait_async(lambda: in_ipvs(kernel, port), 5, "real server back in IPVS")
        got = [(m.subject, m.body) for m in sink.mails]
        assert got == [
            (f"[LB1] Virtualserver {vs} - UP", "=> Starting with quorum up 1+0=1 <= 2 <="),
            (f"[LB1] Virtualserver {vs} - DOWN", "=> Lost quorum 1+0=1 <= 0 <="),
            (f"[LB1] Realserver {rs} of virtual server {vs} - DOWN",
             "=> TCP CHECK failed on service <="),
            (f"[LB1] Virtualserver {vs} - UP", "=> Gained quorum 1+0=1 <= 2 <="),
            (f"[LB1] Realserver {rs} of virtual server {vs} - UP",
             "=> TCP CHECK succeed on service <="),
        ]
        assert sink.mails[1].at - t_down < 3.0  # delay_loop 1 + connect_timeout 1
        assert all(m.rcpt_tos == ["ops@example.org"] and m.message["From"] == "lb1@example.org"
                   for m in sink.mails)

        # the SMTP server goes away: the next transition fails, is counted; the loop runs on
        await sink.close()
        server.close()
        await server.wait_closed()
        async with LoopTicker(0.1) as ticker:
            t0 = time.monotonic()
            await wait_async(lambda: part.alerter.stats().failed >= 2, 10, "two failed mails")
            elapsed = time.monotonic() - t0
        assert ticker.ticks >= int(elapsed / 0.1) // 2  # a blocked loop would not have ticked
        stats = part.alerter.stats()
        assert stats.sent == 5 and (stats.last_error or "").startswith("ConnectionRefusedError")
        await wait_async(lambda: not in_ipvs(kernel, port), 5, "real server out again")
    finally:
        await runner.stop()
        await part.stop()
        server.close()
