"""Keywords the loader parses into the model but the daemon does not act on yet.

One place to keep "never silence" honest: each entry makes the loader warn
``'<keyword>' is parsed but not acted on yet by vrrpd`` with the given text as hint
(the strict-mode keywords: ``... is only partly acted on by vrrpd``).
Whoever implements a feature deletes its entry here (and the test that pins it).
keepalived keywords with no model field at all are warned about where their
block's keyword table lists them (``known_not_acted``).
"""

from __future__ import annotations

_STRICT = ("only partly: authentication is dropped and accept mode turned off, but no firewall "
           "rules drop traffic to the VIPs")

# block title -> keyword -> hint explaining what is missing (None: no hint)
NOT_ACTED_YET: dict[str, dict[str, str | None]] = {
    "global_defs": {
        "vrrp_mcast_group4": None, "vrrp_skip_check_adv_addr": None,
        "vrrp_check_unicast_src": None, "enable_script_security": None,
        "vrrp_strict": _STRICT,
        "default_interface": "it only applies to static_ipaddress, which vrrpd does not "
                             "implement",
    },
    "vrrp_instance": {
        "strict_mode": _STRICT, "no_accept": None,
        "skip_check_adv_addr": None,
    },
    "vrrp_sync_group": {
        "global_tracking": None, "sync_group_tracking_weight": None,
    },
    "virtual_server": {"ha_suspend": None},
    **{block: {"log_all_failures": None}
       for block in ("TCP_CHECK", "HTTP_GET", "SSL_GET", "DNS_CHECK", "UDP_CHECK", "PING_CHECK",
                     "MISC_CHECK")},
}
