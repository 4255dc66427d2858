from __future__ import annotations

from ipaddress import IPv4Address

from healthcheck.model import FileCheckSpec, HttpCheckSpec, MiscCheckSpec, TcpCheckSpec
from vrrpd.config.loader import load_text
from vrrpd.lvs_checks import SpecCache, health_specs

CONF = """
global_defs {
    script_user nobody
}
track_file tf1 {
    file /run/weight1
    weight 3
}
virtual_server 10.0.0.1 80 {
    protocol TCP
    delay_loop 7
    quorum 2
    sorry_server 10.9.9.9 80
    real_server 10.1.0.1 8080 {
        weight 4
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 2
        }
        HTTP_GET {
            url {
                path /health
                status_code 200-204
            }
            connect_port 81
        }
    }
    real_server 10.1.0.2 80 {
        MISC_CHECK {
            misc_path "/usr/local/bin/check 10.1.0.2"
            misc_dynamic
        }
        FILE_CHECK {
            track_file tf1
        }
    }
}
"""


def test_specs_fill_targets_timers_commands_and_track_files() -> None:
    config = load_text(CONF).config
    (vs,) = health_specs(config)
    assert (vs.key, vs.protocol, vs.quorum, vs.sorry_server and vs.sorry_server.key) == (
        "[10.0.0.1]:tcp:80", "tcp", 2, (IPv4Address("10.9.9.9"), 80))
    rs1, rs2 = vs.real_servers
    assert (rs1.key, rs1.weight, rs1.inhibit_on_failure) == ((IPv4Address("10.1.0.1"), 8080), 4,
                                                             True)
    tcp, http = rs1.checkers
    assert isinstance(tcp, TcpCheckSpec) and isinstance(http, HttpCheckSpec)
    # the checker's target defaults to its real server; timers inherited from the VS
    assert (tcp.connect_ip, tcp.connect_port, tcp.connect_timeout, tcp.delay_loop) == (
        IPv4Address("10.1.0.1"), 8080, 2.0, 7.0)
    assert (http.connect_port, http.ssl, http.urls[0].path, http.urls[0].status_codes) == (
        81, False, "/health", ((200, 204),))
    misc, file_check = rs2.checkers
    assert isinstance(misc, MiscCheckSpec) and isinstance(file_check, FileCheckSpec)
    assert misc.command.argv == ("/usr/local/bin/check", "10.1.0.2")
    assert misc.command.user == "nobody" and misc.dynamic
    assert (file_check.path, file_check.weight) == ("/run/weight1", 3)


def test_spec_cache_reuses_unchanged_virtual_servers() -> None:
    cache = SpecCache()
    first = cache.specs(load_text(CONF).config)
    again = cache.specs(load_text(CONF).config)
    assert again[0] is first[0]  # same object: comparing old and new specs is cheap
    changed = cache.specs(load_text(CONF.replace("weight 4", "weight 5")).config)
    assert changed[0] is not first[0] and changed != first
    assert changed == health_specs(load_text(CONF.replace("weight 4", "weight 5")).config)
