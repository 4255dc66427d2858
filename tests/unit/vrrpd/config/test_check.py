"""``vrrpd -t`` / ``--dump-config``: diagnostics format, exit codes, JSON dump."""

from __future__ import annotations

import enum
import io
import ipaddress
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vrrpd.config.check import exit_code, format_diagnostic, run_check, to_jsonable
from vrrpd.config.errors import Diagnostic, Position, Severity

VALID = """global_defs {
    vrrp_garp_master_repeat 2
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {
        10.0.0.100/24
    }
}
"""


def check(tmp_path: Path, text: str, *, dump: bool = False) -> tuple[int, str, list[str]]:
    path = tmp_path / "keepalived.conf"
    path.write_text(text.replace("eth0", "lo"))  # an interface every host has
    out, err = io.StringIO(), io.StringIO()
    code = run_check(str(path), config_id="lb1", dump=dump, out=out, err=err)
    return code, out.getvalue(), err.getvalue().splitlines()


def d(sev: Severity, hint: str | None = None, via: tuple[Position, ...] = ()) -> Diagnostic:
    return Diagnostic(sev, Position("k.conf", 3, 7, via), "bad thing", hint)


def test_exit_codes_follow_keepalived_t() -> None:
    assert exit_code([]) == 0
    assert exit_code([d(Severity.WARNING)]) == 0
    assert exit_code([d(Severity.WARNING), d(Severity.ERROR)]) == 5
    assert exit_code([d(Severity.ERROR), d(Severity.FATAL)]) == 4


def test_format_is_file_line_col_severity_message_hint() -> None:
    assert format_diagnostic(d(Severity.WARNING)) == "k.conf:3:7: warning: bad thing"
    assert format_diagnostic(d(Severity.ERROR, "fix it")) == "k.conf:3:7: error: bad thing (fix it)"
    assert format_diagnostic(d(Severity.FATAL)) == "k.conf:3:7: error: bad thing"


def test_format_names_the_definition_of_an_expanded_token() -> None:
    text = format_diagnostic(d(Severity.ERROR, "hint", (Position("k.conf", 1, 5),)))
    assert text == "k.conf:3:7: error: bad thing (hint; expanded from k.conf:1:5)"


def test_valid_config_exits_0_silently(tmp_path: Path) -> None:
    code, out, err = check(tmp_path, VALID)
    assert (code, out, err) == (0, "", [])


def test_unknown_keyword_is_a_warning_with_position(tmp_path: Path) -> None:
    code, _, err = check(tmp_path, VALID.replace("    priority 150", "    priorty 150"))
    assert code == 0
    assert len(err) == 1
    assert err[0].startswith(f"{tmp_path / 'keepalived.conf'}:8:5: warning: ")
    assert "priorty" in err[0] and "did you mean 'priority'" in err[0]


def test_unclosed_block_exits_5_like_keepalived(tmp_path: Path) -> None:
    code, _, err = check(tmp_path, VALID[:-2])
    assert code == 5
    assert any(":4:" in line and "'vrrp_instance'" in line and ": error: " in line
               for line in err)


def test_missing_interface_is_an_error_as_keepalived_t(tmp_path: Path) -> None:
    path = tmp_path / "keepalived.conf"
    path.write_text(VALID.replace("eth0", "csnosuch0"))
    out, err = io.StringIO(), io.StringIO()
    code = run_check(str(path), config_id="lb1", dump=False, out=out, err=err)
    assert code == 5
    assert f"{path}:6:5: error: interface csnosuch0 does not exist on this host" in \
        err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert run_check(str(path), config_id="lb1", dump=False, out=out, err=err,
                     host_checks=False) == 0


def test_unreadable_file_exits_4(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run_check(str(tmp_path / "missing.conf"), config_id="x", dump=False, out=out, err=err)
    assert code == 4
    assert "missing.conf" in err.getvalue() and ": error: " in err.getvalue()


def test_dump_config_is_json_with_names_and_strings(tmp_path: Path) -> None:
    code, out, _ = check(tmp_path, VALID, dump=True)
    assert code == 0
    data = json.loads(out)
    inst = data["vrrp_instances"][0]
    assert inst["name"] == "VI_1"
    assert inst["state"] == "MASTER"
    assert inst["priority"] == 150
    assert inst["virtual_ipaddresses"][0]["address"] == "10.0.0.100/24"
    assert inst["interface"] == "lo"
    assert data["global_defs"]["vrrp_garp_master_repeat"] == 2


def test_without_a_loader_the_syntax_layer_alone_is_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vrrpd.config.loader", None)  # import raises ImportError
    code, out, err = check(tmp_path, VALID.replace("    priority 150", "    priorty 150"),
                           dump=True)
    assert (code, err) == (0, [])  # unknown keywords are the model's business
    nodes = json.loads(out)
    assert nodes[1]["keyword"]["text"] == "vrrp_instance"
    assert nodes[1]["keyword"]["pos"]["line"] == 4
    code, _, err = check(tmp_path, VALID + "}\n")
    assert code == 5 and len(err) == 1 and ":13:1: error: " in err[0]


class Color(enum.Enum):
    RED = 1


class Flags(enum.Flag):
    A = 1


@dataclass(frozen=True)
class Inner:
    addr: ipaddress.IPv4Address
    net: ipaddress.IPv6Network
    color: Color
    flags: frozenset[str]


def test_to_jsonable_generic_conversions() -> None:
    value = {"k": (Inner(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv6Network("fd00::/64"),
                         Color.RED, frozenset({"b", "a"})),),
             "f": 1.5, "inf": float("inf"), "flag": Flags.A, "none": None, "raw": b"\x01"}
    assert to_jsonable(value) == {
        "k": [{"addr": "10.0.0.1", "net": "fd00::/64", "color": "RED", "flags": ["a", "b"]}],
        "f": 1.5, "inf": "inf", "flag": "A", "none": None, "raw": "01"}
