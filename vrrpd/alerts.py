"""keepalived's ``smtp_alert`` wired to the runners: which transitions send a mail.

One :class:`MailPart` per process, built from ``global_defs`` (the VRRP process mails VRRP
transitions, the checker process checker transitions; a single process both)::

    mail = MailPart(config)                                  # MailAlerter inside
    vrrp = VrrpMailer(mail.alerter, lambda: runner.config)   # on_state / on_group_state
    checks = CheckerMailer(mail.alerter, lambda: lvs.config) # CheckerManager(on_event=...)
    runners = [("mail", mail), ...]                          # stopped last: flushes STOP mails

Whether an object mails is its resolved ``smtp_alert`` flag (the loader applies keepalived's
precedence: the object's own ``smtp_alert``, else global ``smtp_alert_vrrp`` /
``smtp_alert_checker``, else global ``smtp_alert``, else off -- on for real servers).  Mail is
sent at all only with ``notification_email`` and ``smtp_server`` (``MailAlerter.enabled``).
Every call returns at once: the alerter queues, one background task sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from healthcheck.events import CheckerEvent, QuorumEvent, RealServerEvent
from vrrpd.mail import MailAlerter, MailSettings

if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

    from vrrpd.config.model import Config
    from vrrpd.config.model_lvs import RealServer, VirtualServer

__all__ = ["CheckerMailer", "MailPart", "VrrpMailer", "mail_detail"]

ConfigSource = Callable[[], "Config"]
StateCallback = Callable[[str, str], None]

# the failure reasons keepalived's HTTP_GET/SSL_GET put in the body, from our probe details
_HTTP_DETAILS = ((": status ", "HTTP status code error"), (": digest ", "MD5 digest error"))


def mail_detail(event: RealServerEvent) -> str | None:
    """The ``: reason`` keepalived adds to a failed HTTP_GET/SSL_GET/SMTP_CHECK body: status
    and digest mismatches in its words, any other HTTP failure ``connection error``; SMTP_CHECK
    failures carry our probe's own text.  None for the other checkers and for successes."""
    if event.checker_up or event.check not in ("HTTP_GET", "SSL_GET", "SMTP_CHECK"):
        return None
    if event.check == "SMTP_CHECK":
        return event.detail or None
    for marker, text in _HTTP_DETAILS:
        if marker in event.detail:
            return text
    return "connection error"


class VrrpMailer:
    """``on_state`` / ``on_group_state`` callbacks of a ``VrrpRunner``.  ``config`` returns the
    configuration in force (the runner's, so a reload's flags apply at once)."""

    def __init__(self, alerter: MailAlerter, config: ConfigSource) -> None:
        self.alerter = alerter
        self._config = config
        self._seen: Config | None = None
        self._instances: dict[str, bool] = {}

    def _flags(self) -> dict[str, bool]:
        config = self._config()
        if config is not self._seen:
            self._seen = config
            self._instances = {i.name: i.smtp_alert for i in config.vrrp_instances}
        return self._instances

    def on_state(self, instance: str, state: str) -> None:
        if self._flags().get(instance):
            self.alerter.alert_vrrp(instance, state)

    def on_group_state(self, group: str, state: str) -> None:
        g = self._config().vrrp_sync_groups.get(group)
        if g is not None and g.smtp_alert:
            self.alerter.alert_group(group, state)

    def chain(self, then: StateCallback | None) -> StateCallback:
        """An ``on_state`` that mails, then calls ``then`` (e.g. the LVS runner's)."""
        if then is None:
            return self.on_state

        def both(instance: str, state: str) -> None:
            try:
                self.on_state(instance, state)
            finally:
                then(instance, state)

        return both


class CheckerMailer:
    """``on_event`` of a ``CheckerManager``: real-server mails when the real server's
    ``smtp_alert`` is on, quorum mails when the virtual server's is."""

    def __init__(self, alerter: MailAlerter, config: ConfigSource) -> None:
        self.alerter = alerter
        self._config = config
        self._seen: Config | None = None
        self._vs: dict[str, VirtualServer] = {}
        self._rs: dict[tuple[str, IPv4Address | IPv6Address, int], RealServer] = {}
        self._no_checker_emails = False

    def _index(self) -> None:
        config = self._config()
        if config is self._seen:
            return
        self._seen = config
        self._vs = {vs.key: vs for vs in config.virtual_servers}
        self._no_checker_emails = config.global_defs.no_checker_emails
        self._rs = {}
        for vs in config.virtual_servers:
            for rs in vs.real_servers:
                self._rs.setdefault((vs.key, rs.address, rs.port), rs)

    def on_event(self, event: CheckerEvent) -> None:
        self._index()
        if isinstance(event, QuorumEvent):
            vs = self._vs.get(event.vs_key)
            if vs is not None and vs.smtp_alert:
                self.alerter.alert_quorum(event.vs_key, event.up, quorum=event.quorum,
                                          hysteresis=event.hysteresis,
                                          weight_sum=event.weight_sum,
                                          starting=event.starting, stopping=event.stopping)
            return
        rs = self._rs.get((event.vs_key, event.rs[0], event.rs[1]))
        if rs is None or not rs.smtp_alert:
            return
        if not event.changed and self._no_checker_emails:
            return  # keepalived's no_checker_emails: only when the real server itself changes
        if event.stopping or event.check is None:
            self.alerter.alert_rs_shutdown(event.rs_text, event.vs_key)
            return
        check = "SSL_GET" if event.ssl else event.check
        self.alerter.alert_checker(event.rs_text, event.vs_key, event.checker_up, check=check,
                                   detail=mail_detail(event), rs_up=event.alive)


class MailPart:
    """The alerter as a daemon part: nothing to start; ``stop()`` (after the runners, so the
    STOP mails are queued) gives the queue ``close_timeout`` seconds, then drops the rest."""

    def __init__(self, config: Config, *, close_timeout: float = 5.0,
                 alerter: MailAlerter | None = None) -> None:
        self.alerter = alerter or MailAlerter.from_global_defs(config.global_defs)
        self.close_timeout = close_timeout

    @property
    def enabled(self) -> bool:
        return self.alerter.enabled

    def vrrp(self, config: ConfigSource) -> VrrpMailer:
        return VrrpMailer(self.alerter, config)

    def checkers(self, config: ConfigSource) -> CheckerMailer:
        return CheckerMailer(self.alerter, config)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.alerter.close(self.close_timeout)

    async def apply_config(self, config: Config) -> None:
        """A reload (``daemon.reload_config``; the mail part comes first, so the runners'
        transitions during their reload already use it): recipients, sender, server, timeout
        of the new global_defs apply to every mail sent from now on (one still queued too);
        router_id to the alerts raised from now on."""
        self.alerter.settings = MailSettings.from_global_defs(
            config.global_defs, queue_size=self.alerter.settings.queue_size)

    def stats(self) -> dict[str, Any]:
        s = self.alerter.stats()
        return {"sent": s.sent, "failed": s.failed, "dropped": s.dropped,
                "last_error": s.last_error}
