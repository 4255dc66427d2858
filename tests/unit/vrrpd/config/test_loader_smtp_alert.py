"""smtp_alert precedence, as keepalived 2.2.7 resolves it (keepalived.conf(5) and its init code):
an object's own ``smtp_alert [BOOL]`` wins; else global ``smtp_alert_vrrp`` (instances, sync
groups) / ``smtp_alert_checker`` (virtual and real servers); else global ``smtp_alert``; else off
-- except real servers, on by default.  None of these keywords is warned as not acted on."""

from __future__ import annotations

import textwrap

import pytest

from vrrpd.config.loader import load_text
from vrrpd.config.model import Config


def conf(global_lines: str = "", own: str = "") -> Config:
    """An instance, a sync group, a virtual server and a real server; ``own`` goes into each."""
    text = f"""
        global_defs {{
          {global_lines}
        }}
        vrrp_instance VI_1 {{
          interface lo
          virtual_router_id 1
          virtual_ipaddress {{ 10.0.0.100 }}
          {own}
        }}
        vrrp_instance VI_2 {{
          interface lo
          virtual_router_id 2
          virtual_ipaddress {{ 10.0.0.101 }}
        }}
        vrrp_sync_group G {{
          group {{ VI_1 VI_2 }}
          {own}
        }}
        virtual_server 10.0.0.1 80 {{
          protocol TCP
          {own}
          real_server 10.0.1.1 80 {{
            {own}
            TCP_CHECK {{ }}
          }}
        }}
    """
    result = load_text(textwrap.dedent(text), filename="t.conf")
    assert not [d for d in result.diagnostics if "acted on" in d.message], result.diagnostics
    return result.config


def flags(config: Config) -> tuple[bool | None, bool | None, bool, bool]:
    vs = config.virtual_servers[0]
    return (config.vrrp_instances[0].smtp_alert, config.vrrp_sync_groups["G"].smtp_alert,
            vs.smtp_alert, vs.real_servers[0].smtp_alert)


@pytest.mark.parametrize(("global_lines", "own", "expected"), [
    # nothing anywhere: only real servers mail
    ("", "", (False, False, False, True)),
    # global smtp_alert: the default of everything
    ("smtp_alert", "", (True, True, True, True)),
    ("smtp_alert no", "", (False, False, False, False)),
    # the per-family defaults override the global one
    ("smtp_alert\n smtp_alert_vrrp off", "", (False, False, True, True)),
    ("smtp_alert\n smtp_alert_checker false", "", (True, True, False, False)),
    ("smtp_alert no\n smtp_alert_vrrp", "", (True, True, False, False)),
    ("smtp_alert_checker", "", (False, False, True, True)),
    ("smtp_alert_vrrp", "", (True, True, False, True)),
    # an object's own smtp_alert overrides every global
    ("smtp_alert_vrrp no\n smtp_alert_checker no\n smtp_alert no", "smtp_alert",
     (True, True, True, True)),
    ("smtp_alert\n smtp_alert_vrrp yes\n smtp_alert_checker on", "smtp_alert no",
     (False, False, False, False)),
])
def test_precedence(global_lines: str, own: str, expected: tuple[bool, ...]) -> None:
    assert flags(conf(global_lines, own)) == expected


def test_global_defs_after_the_blocks_still_count() -> None:
    text = """
        vrrp_instance VI_1 {
          interface lo
          virtual_router_id 1
        }
        vrrp_sync_group G {
          group { VI_1 VI_2 }
        }
        vrrp_instance VI_2 {
          interface lo
          virtual_router_id 2
        }
        global_defs {
          smtp_alert_vrrp
        }
    """
    config = load_text(textwrap.dedent(text), filename="t.conf").config
    assert config.vrrp_instances[0].smtp_alert is True
    assert config.vrrp_sync_groups["G"].smtp_alert is True


def test_mail_keywords_are_acted_on() -> None:
    text = """
        global_defs {
          notification_email { ops@example.org }
          notification_email_from lb1@example.org
          smtp_server 127.0.0.1 2525
          smtp_helo_name lb1.example.org
          smtp_connect_timeout 5
          router_id LB1
          smtp_alert
          smtp_alert_vrrp
          smtp_alert_checker
          no_email_faults
          no_checker_emails
        }
    """
    result = load_text(textwrap.dedent(text), filename="t.conf")
    assert result.diagnostics == ()
    g = result.config.global_defs
    assert (g.notification_email, g.smtp_port, g.router_id) == (("ops@example.org",), 2525, "LB1")
    assert g.no_email_faults and g.no_checker_emails
    assert not load_text("global_defs {\n smtp_alert\n}\n").config.global_defs.no_email_faults
