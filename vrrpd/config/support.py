"""Keywords the loader parses into the model but the daemon does not act on yet.

One place to keep "never silence" honest: each entry makes the loader warn
``'<keyword>' is parsed but not acted on yet by vrrpd`` with the given text as hint
(the strict-mode keywords: ``... is only partly acted on by vrrpd``).
Whoever implements a feature deletes its entry here (and the test that pins it).
keepalived keywords with no model field at all are warned about where their
block's keyword table lists them (``known_not_acted``).
"""

from __future__ import annotations

_EMAIL = "vrrpd does not send e-mail alerts yet"
_STRICT = ("only partly: authentication is dropped and accept mode turned off, but no firewall "
           "rules drop traffic to the VIPs")

# block title -> keyword -> hint explaining what is missing (None: no hint)
NOT_ACTED_YET: dict[str, dict[str, str | None]] = {
    "global_defs": {
        "notification_email": _EMAIL, "notification_email_from": _EMAIL, "smtp_server": _EMAIL,
        "smtp_connect_timeout": _EMAIL, "smtp_alert": _EMAIL, "smtp_alert_vrrp": _EMAIL,
        "smtp_alert_checker": _EMAIL,
        "router_id": "it only names this host in e-mail alerts, which vrrpd does not send yet",
        "vrrp_mcast_group4": None, "vrrp_skip_check_adv_addr": None,
        "vrrp_check_unicast_src": None, "enable_script_security": None,
        "lvs_notify_fifo": None, "vrrp_strict": _STRICT,
        "default_interface": "it only applies to static_ipaddress, which vrrpd does not "
                             "implement",
    },
    "vrrp_instance": {
        "smtp_alert": _EMAIL, "strict_mode": _STRICT, "no_accept": None,
        "skip_check_adv_addr": None,
    },
    "vrrp_sync_group": {
        "smtp_alert": _EMAIL, "global_tracking": None, "sync_group_tracking_weight": None,
    },
    "virtual_server": {"smtp_alert": _EMAIL, "ha_suspend": None},
    "real_server": {"smtp_alert": _EMAIL},
    "SMTP_CHECK": {"host": None},
    **{block: {"log_all_failures": None}
       for block in ("TCP_CHECK", "HTTP_GET", "SSL_GET", "DNS_CHECK", "UDP_CHECK", "PING_CHECK",
                     "MISC_CHECK")},
}
