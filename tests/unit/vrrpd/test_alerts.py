"""smtp_alert wiring (vrrpd.alerts): which transitions mail, against a real SMTP server (aiosmtpd
on 127.0.0.1), the REAL VrrpRunner on the recording I/O fakes, the daemon's build_runners, and
the mail counters in the status document, the text status and the metrics."""

from __future__ import annotations

import argparse
import functools
import socket
import time
from collections.abc import AsyncIterator
from ipaddress import ip_address
from typing import Any

import pytest
from smtp_sink import SmtpSink

from healthcheck.events import QuorumEvent, RealServerEvent
from tests.unit.vrrpd.loop_ticker import LoopTicker
from vrrpd.alerts import CheckerMailer, MailPart, VrrpMailer, mail_detail
from vrrpd.config.loader import load_text
from vrrpd.config.model import Config
from vrrpd.daemon import build_runners
from vrrpd.lvs import default_checkers
from vrrpd.metrics import iter_lines, metric_families
from vrrpd.status import DaemonStatus
from vrrpd.status_text import format_status
from vrrpd.vrrp.fakes import (
    FakeAddressManager,
    FakeGarpSender,
    FakeLinkMonitor,
    FakeProcessRunner,
    FakeSocketPool,
)
from vrrpd.vrrp.links import LinkCallback
from vrrpd.vrrp.runner import VrrpRunner


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as s:
        yield s


def mail_globals(port: int, extra: str = "") -> str:
    return f"""
global_defs {{
  notification_email {{
    ops@example.org
    noc@example.org
  }}
  notification_email_from lb1@example.org
  smtp_server 127.0.0.1 {port}
  smtp_connect_timeout 3
  router_id LB1
  {extra}
}}
"""


def load(text: str) -> Config:
    result = load_text(text)
    assert not [d for d in result.diagnostics if d.severity.name != "WARNING"], result.diagnostics
    return result.config


def instance(name: str, vrid: int, vip: str, extra: str = "") -> str:
    return (f"vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n"
            f" priority 255\n advert_int 1\n virtual_ipaddress {{\n {vip}/24\n }}\n{extra}\n}}\n")


def vrrp_runner(config: Config, mailer: VrrpMailer) -> VrrpRunner:
    addresses = FakeAddressManager.with_links("eth0", primary={"eth0": "10.0.0.1"})

    def monitor(cb: LinkCallback) -> FakeLinkMonitor:
        return FakeLinkMonitor(cb, list(addresses.links.values()))

    return VrrpRunner(config, addresses=addresses, socket_pool=FakeSocketPool,
                      garp_sender=FakeGarpSender(), link_monitor=monitor,
                      process_runner=FakeProcessRunner(), on_state=mailer.chain(None),
                      on_group_state=mailer.on_group_state)


# ---------------------------------------------------------------------- VRRP


async def test_instance_and_sync_group_transitions_mail_as_keepalived(sink: SmtpSink) -> None:
    """VI_1 mails (global smtp_alert_vrrp), VI_2 does not (its own ``smtp_alert no``), the sync
    group does (smtp_alert_vrrp); BACKUP then MASTER at start, Stopping at stop."""
    config = load(mail_globals(sink.port, "smtp_alert_vrrp")
                  + instance("VI_1", 51, "10.0.0.100")
                  + instance("VI_2", 52, "10.0.0.200", " smtp_alert no")
                  + "vrrp_sync_group G {\n group {\n VI_1\n VI_2\n }\n}\n")
    part = MailPart(config)
    runner: Any = None
    runner = vrrp_runner(config, part.vrrp(lambda: runner.config))
    await runner.start()
    try:
        await sink.wait_for(4)
        assert runner.status()["VI_1"]["state"] == "MASTER"
    finally:
        await runner.stop()
        await part.stop()
    assert sink.subjects() == [  # start: BACKUP (INIT -> BACKUP), then MASTER together
        "[LB1] VRRP Instance VI_1 - Entering BACKUP state",
        "[LB1] VRRP Group G - Entering BACKUP state",
        "[LB1] VRRP Instance VI_1 - Entering MASTER state",
        "[LB1] VRRP Group G - Entering MASTER state",
        "[LB1] VRRP Instance VI_1 - Stopping",
        "[LB1] VRRP Group G - Stopping",
    ]
    by_subject = {m.subject: m for m in sink.mails}
    m = by_subject["[LB1] VRRP Instance VI_1 - Entering MASTER state"]
    assert m.body == "=> VRRP Instance is now owning VRRP VIPs <="
    assert (m.mail_from, m.rcpt_tos) == ("lb1@example.org", ["ops@example.org", "noc@example.org"])
    assert (m.message["From"], m.message["X-Mailer"]) == ("lb1@example.org", "Keepalived")
    assert by_subject["[LB1] VRRP Group G - Entering MASTER state"].body == \
        "=> All VRRP group instances are now in MASTER state <="
    assert by_subject["[LB1] VRRP Instance VI_1 - Stopping"].body == "=> VRRP Instance stopping <="
    # the STOP mails were queued by runner.stop() and flushed by part.stop()
    assert part.alerter.stats().sent == 6 and part.alerter.stats().failed == 0


async def test_vrrp_mailer_follows_the_config_in_force(sink: SmtpSink) -> None:
    """A reload that turns smtp_alert on/off applies at once (the source is the runner's)."""
    on = load(mail_globals(sink.port) + instance("VI_1", 51, "10.0.0.100", " smtp_alert"))
    off = load(mail_globals(sink.port) + instance("VI_1", 51, "10.0.0.100"))
    current = [off]
    part = MailPart(on)
    downstream: list[tuple[str, str]] = []
    on_state = part.vrrp(lambda: current[0]).chain(lambda i, s: downstream.append((i, s)))
    on_state("VI_1", "BACKUP")
    current[0] = on
    on_state("VI_1", "MASTER")
    on_state("VI_1", "MASTER")  # no second mail for the state last mailed
    on_state("VI_9", "MASTER")  # unknown instance: nothing
    await part.alerter.drain()
    await part.stop()
    assert sink.subjects() == ["[LB1] VRRP Instance VI_1 - Entering MASTER state"]
    assert downstream == [("VI_1", "BACKUP"), ("VI_1", "MASTER"), ("VI_1", "MASTER"),
                          ("VI_9", "MASTER")]


async def test_a_reload_changes_the_mail_settings(sink: SmtpSink) -> None:
    first = load(mail_globals(sink.port) + instance("VI_1", 51, "10.0.0.100", " smtp_alert"))
    second = load(mail_globals(sink.port).replace("LB1", "LB2").replace(
        "noc@example.org", "oncall@example.org") + instance("VI_1", 51, "10.0.0.100",
                                                             " smtp_alert"))
    current = [first]
    part = MailPart(first)
    mailer = part.vrrp(lambda: current[0])
    mailer.on_state("VI_1", "BACKUP")
    await part.alerter.drain()
    current[0] = second
    await part.apply_config(second)
    mailer.on_state("VI_1", "MASTER")
    await part.alerter.drain()
    await part.stop()
    assert [(m.subject, m.rcpt_tos) for m in sink.mails] == [
        ("[LB1] VRRP Instance VI_1 - Entering BACKUP state", ["ops@example.org",
                                                              "noc@example.org"]),
        ("[LB2] VRRP Instance VI_1 - Entering MASTER state", ["ops@example.org",
                                                              "oncall@example.org"])]


# ---------------------------------------------------------------------- checkers

VS_KEY = "[10.0.0.1]:tcp:80"


def lvs_config(port: int, rs2_alert: str = "", vs_alert: str = "smtp_alert") -> Config:
    return load(mail_globals(port) + f"""
virtual_server 10.0.0.1 80 {{
  protocol TCP
  quorum 2
  {vs_alert}
  real_server 10.1.0.1 80 {{
    TCP_CHECK {{ }}
  }}
  real_server 10.1.0.2 80 {{
    {rs2_alert}
    SSL_GET {{
      url {{ path / }}
    }}
  }}
}}
""")


def rs_event(ip: str, **kw: Any) -> RealServerEvent:
    base: dict[str, Any] = {"vs_key": VS_KEY, "rs": (ip_address(ip), 80),
                            "rs_text": f"[{ip}]:tcp:80", "alive": False, "changed": True,
                            "check": "TCP_CHECK", "checker_up": False,
                            "detail": "connection refused"}
    base.update(kw)
    return RealServerEvent(**base)


async def test_checker_events_mail_per_the_real_and_virtual_server_flags(
        sink: SmtpSink) -> None:
    config = lvs_config(sink.port)
    part = MailPart(config)
    mailer = part.checkers(lambda: config)
    mailer.on_event(QuorumEvent(vs_key=VS_KEY, up=True, quorum=2, hysteresis=0, weight_sum=2,
                                starting=True))
    mailer.on_event(QuorumEvent(vs_key=VS_KEY, up=False, quorum=2, hysteresis=0, weight_sum=1))
    mailer.on_event(rs_event("10.1.0.1"))
    # another checker of a real server already down: the subject keeps DOWN, the body succeeds
    mailer.on_event(rs_event("10.1.0.1", changed=False, checker_up=True, detail="ok"))
    mailer.on_event(rs_event("10.1.0.2", check="HTTP_GET", ssl=True, detail="/: status 500"))
    mailer.on_event(rs_event("10.1.0.2", alive=True, check="HTTP_GET", ssl=True,
                             checker_up=True, detail="1 url(s) ok"))
    mailer.on_event(rs_event("10.1.0.2", check=None, stopping=True))
    mailer.on_event(QuorumEvent(vs_key="[10.9.9.9]:tcp:80", up=False, quorum=1, hysteresis=0,
                                weight_sum=0))  # not in the config: nothing
    await part.alerter.drain()
    await part.stop()
    got = [(m.subject, m.body) for m in sink.mails]
    assert got == [
        ("[LB1] Virtualserver [10.0.0.1]:tcp:80 - UP",
         "=> Starting with quorum up 2+0=2 <= 2 <="),
        ("[LB1] Virtualserver [10.0.0.1]:tcp:80 - DOWN", "=> Lost quorum 2+0=2 <= 1 <="),
        ("[LB1] Realserver [10.1.0.1]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN",
         "=> TCP CHECK failed on service <="),
        ("[LB1] Realserver [10.1.0.1]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN",
         "=> TCP CHECK succeed on service <="),
        ("[LB1] Realserver [10.1.0.2]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN",
         "=> CHECK failed on service : HTTP status code error <="),
        ("[LB1] Realserver [10.1.0.2]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - UP",
         "=> CHECK succeed on service <="),
        ("[LB1] Realserver [10.1.0.2]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN",
         "=> Shutting down <="),
    ]


async def test_checker_flags_off_send_nothing(sink: SmtpSink) -> None:
    config = lvs_config(sink.port, rs2_alert="smtp_alert no", vs_alert="")
    part = MailPart(config)
    mailer = CheckerMailer(part.alerter, lambda: config)
    mailer.on_event(QuorumEvent(vs_key=VS_KEY, up=False, quorum=2, hysteresis=0, weight_sum=1))
    mailer.on_event(rs_event("10.1.0.2", check="HTTP_GET"))
    mailer.on_event(rs_event("10.1.0.1"))  # real servers mail by default
    await part.alerter.drain()
    await part.stop()
    assert [m.subject for m in sink.mails] == [
        "[LB1] Realserver [10.1.0.1]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN"]


async def test_no_checker_emails_and_no_email_faults(sink: SmtpSink) -> None:
    """global_defs no_checker_emails: a real server mails only when it is itself added or
    removed; no_email_faults: no mail on entering FAULT (the next state still mails)."""
    config = load(mail_globals(sink.port, "no_checker_emails\n  no_email_faults")
                  + instance("VI_1", 51, "10.0.0.100", " smtp_alert")
                  + "virtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 10.1.0.1 80 {\n"
                    " TCP_CHECK { }\n }\n}\n")
    part = MailPart(config)
    checks, vrrp = part.checkers(lambda: config), part.vrrp(lambda: config)
    checks.on_event(rs_event("10.1.0.1"))
    checks.on_event(rs_event("10.1.0.1", changed=False, checker_up=True, detail="ok"))
    vrrp.on_state("VI_1", "FAULT")
    vrrp.on_state("VI_1", "BACKUP")
    await part.alerter.drain()
    await part.stop()
    assert sink.subjects() == [
        "[LB1] Realserver [10.1.0.1]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN",
        "[LB1] VRRP Instance VI_1 - Entering BACKUP state"]


def test_mail_detail_in_keepalived_words() -> None:
    http = functools.partial(rs_event, "10.1.0.2", check="HTTP_GET")
    assert mail_detail(http(detail="/: status 503")) == "HTTP status code error"
    assert mail_detail(http(detail="/: digest abc != def")) == "MD5 digest error"
    assert mail_detail(http(detail="/: connection refused")) == "connection error"
    assert mail_detail(http(detail="/: timed out after 5s")) == "connection error"
    assert mail_detail(http(checker_up=True, detail="1 url(s) ok")) is None
    assert mail_detail(rs_event("10.1.0.1")) is None  # TCP_CHECK says no reason
    assert mail_detail(rs_event("10.1.0.1", check="SMTP_CHECK", detail="bad reply: 554")) == \
        "bad reply: 554"


# ---------------------------------------------------------------------- daemon wiring

BOTH = """
vrrp_instance VI_1 {
  interface lo
  virtual_router_id 51
  virtual_ipaddress { 10.0.0.100 }
}
virtual_server 10.0.0.1 80 {
  protocol TCP
  real_server 10.1.0.1 80 {
    TCP_CHECK { }
  }
}
"""


def args(**kw: bool) -> argparse.Namespace:
    return argparse.Namespace(vrrp=kw.get("vrrp", False), check=kw.get("check", False),
                              dont_release_ipvs=False)


@pytest.mark.parametrize(("flags", "names"), [
    ({}, ["mail", "lvs", "vrrp"]),
    ({"vrrp": True}, ["mail", "vrrp"]),  # -P: the VRRP process mails VRRP transitions
    ({"check": True}, ["mail", "lvs"]),  # -C: the checker process mails checker transitions
])
def test_build_runners_adds_one_mail_part_per_process(flags: dict[str, bool],
                                                      names: list[str]) -> None:
    config = load(mail_globals(2525, "smtp_alert") + BOTH)
    ops = DaemonStatus()
    runners = build_runners(config, args(**flags), ops)
    assert [n for n, _ in runners] == names
    mail = runners[0][1]
    assert isinstance(mail, MailPart) and ops.mail is mail
    parts: dict[str, Any] = dict(runners)
    if "lvs" in parts:  # the checkers report to a CheckerMailer on the same alerter
        factory = parts["lvs"]._checker_factory
        assert isinstance(factory, functools.partial) and factory.func is default_checkers
        hook = factory.keywords["on_event"]
        assert isinstance(hook.__self__, CheckerMailer)
        assert hook.__self__.alerter is mail.alerter
    if "vrrp" in parts:
        assert parts["vrrp"]._on_group_state.__self__.alerter is mail.alerter


def test_build_runners_without_mail_settings_adds_nothing() -> None:
    config = load("global_defs {\n smtp_alert\n}\n" + BOTH)  # no notification_email
    ops = DaemonStatus()
    runners = build_runners(config, args(), ops)
    assert [n for n, _ in runners] == ["lvs", "vrrp"]
    assert ops.mail is None and "mail" not in ops.document()
    lvs: Any = dict(runners)["lvs"]
    assert lvs._checker_factory is default_checkers


# ---------------------------------------------------------------------- visibility


async def test_failures_are_counted_and_shown_in_status_text_and_metrics(
        dead_port: int) -> None:
    config = load(mail_globals(dead_port, "smtp_alert") + instance("VI_1", 51, "10.0.0.100"))
    part = MailPart(config)
    ops = DaemonStatus()
    ops.mail = part
    assert ops.document()["mail"] == {"sent": 0, "failed": 0, "dropped": 0, "last_error": None}
    VrrpMailer(part.alerter, lambda: config).on_state("VI_1", "MASTER")
    await part.alerter.drain()
    doc = ops.document()
    assert doc["mail"]["failed"] == 1 and doc["mail"]["sent"] == 0
    assert (doc["mail"]["last_error"] or "").startswith("ConnectionRefusedError")
    text = format_status(doc)
    assert "mail alerts: 0 sent, 1 failed, 0 dropped (last error: " in text
    lines = set(iter_lines(metric_families(doc)))
    assert {'vrrpd_mail_total{outcome="sent"} 0', 'vrrpd_mail_total{outcome="failed"} 1',
            'vrrpd_mail_total{outcome="dropped"} 0'} <= lines
    await part.stop()


async def test_stop_with_a_silent_server_gives_up_after_close_timeout() -> None:
    """A server that accepts and never answers: stop() returns after ``close_timeout``, the
    unsent mail counted as dropped, and the loop kept running meanwhile."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        config = load(mail_globals(listener.getsockname()[1]) + instance("VI_1", 51, "10.0.0.1",
                                                                         " smtp_alert"))
        part = MailPart(config, close_timeout=0.5)
        VrrpMailer(part.alerter, lambda: config).on_state("VI_1", "MASTER")
        async with LoopTicker(0.05) as ticker:
            t0 = time.monotonic()
            await part.stop()
            took = time.monotonic() - t0
        assert 0.4 < took < 2.0
        assert ticker.ticks >= 3  # ~10 expected in 0.5 s; a blocked loop: 0
        assert part.alerter.stats().dropped == 1 and part.alerter.stats().sent == 0
    finally:
        listener.close()
