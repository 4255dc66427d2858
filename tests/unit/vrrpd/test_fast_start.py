"""The IPVS start cache's key: what makes a cache valid, and everything that makes it stale.

Real config loads (``vrrpd.config.loader.load`` on files in a temp dir, with an include glob),
the real writer (``vrrpd.lvs_cache.write_cache``) and reader (``fast_start.read_cache``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import ClassVar

import pytest

from vrrpd import fast_start, lvs_cache
from vrrpd.config.inputs import last_inputs
from vrrpd.config.loader import load
from vrrpd.fast_start import CacheSettings, Skip, check_key, look, read_cache

MAIN = """\
global_defs {
    router_id fs
}
include conf.d/*.conf
virtual_server 10.9.0.1 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.9.1.1 80 {
        weight 2
    }
}
"""
PART = """\
virtual_server 10.9.0.2 80 {
    lb_algo wlc
    lb_kind NAT
    protocol TCP
    @%s real_server 10.9.1.2 80 {
        weight 3
    }
}
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text(PART % "node1")
    main = tmp_path / "keepalived.conf"
    main.write_text(MAIN)
    return main


def settings_for(conf: Path, cache: Path, config_id: str = "node1") -> CacheSettings:
    return CacheSettings(str(conf), config_id, str(cache), True)


def written(conf: Path, cache: Path, config_id: str = "node1") -> CacheSettings:
    """Load the config as the daemon does and write a cache for it (two fake requests)."""
    result = load(str(conf), config_id=config_id)
    assert not [d for d in result.diagnostics if d.severity >= 2], result.diagnostics
    settings = settings_for(conf, cache, config_id)
    inputs = last_inputs(str(conf), config_id)
    assert inputs is not None
    lvs_cache.write_cache(settings, lvs_cache.cache_key(settings, inputs), b"\x01\x05",
                          [b"svc", b"dest"], 1)
    return settings


def validate(settings: CacheSettings) -> None:
    check_key(read_cache(settings)["key"], settings)


def stale(settings: CacheSettings) -> str:
    with pytest.raises(Skip) as exc:
        validate(settings)
    return str(exc.value)


def test_inputs_record_every_file_and_pattern(conf: Path) -> None:
    load(str(conf), config_id="node1")
    inputs = last_inputs(str(conf), "node1")
    assert inputs is not None and inputs.deterministic
    assert [p for p, _ in inputs.files] == [str(conf), str(conf.parent / "conf.d" / "a.conf")]
    assert inputs.patterns == [(str(conf.parent / "conf.d" / "*.conf"),
                                (str(conf.parent / "conf.d" / "a.conf"),))]


def test_random_makes_a_config_uncacheable(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("global_defs {\n    router_id r${_RANDOM 1 9}\n}\n")
    load(str(conf), config_id="x")
    inputs = last_inputs(str(conf), "x")
    assert inputs is not None and not inputs.deterministic


def test_fresh_cache_is_valid_and_holds_the_requests(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    validate(settings)
    cache = read_cache(settings)
    assert cache["cmds"] == b"\x01\x05" and cache["payloads"] == [b"svc", b"dest"]
    assert os.stat(tmp_path / "cache").st_mode & 0o777 == 0o700
    assert os.stat(settings.cache_file()).st_mode & 0o777 == 0o600
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]


def test_edited_file_invalidates(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    part = conf.parent / "conf.d" / "a.conf"
    part.write_text(part.read_text().replace("weight 3", "weight 4"))
    assert stale(settings) == f"stale_key:file {part}"


def test_edited_main_file_invalidates(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    conf.write_text(MAIN.replace("weight 2", "weight 5"))
    assert stale(settings) == f"stale_key:file {conf}"


def test_new_file_matching_an_include_glob_invalidates(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    (conf.parent / "conf.d" / "b.conf").write_text("")
    assert stale(settings) == f"stale_key:include {conf.parent / 'conf.d' / '*.conf'}"


def test_file_not_matching_the_glob_changes_nothing(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    (conf.parent / "conf.d" / "b.conf.disabled").write_text("garbage {")
    validate(settings)


def test_removed_include_invalidates(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    (conf.parent / "conf.d" / "a.conf").unlink()
    assert stale(settings).startswith("stale_key:file ")


def test_missing_plain_include_that_appears_invalidates(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(MAIN.replace("conf.d/*.conf", "extra.conf"))
    settings = written(conf, tmp_path / "cache")  # extra.conf absent: a warning, recorded
    (tmp_path / "extra.conf").write_text("")
    assert stale(settings) == f"stale_key:include {tmp_path / 'extra.conf'}"


def test_config_id_change_finds_no_cache_and_fails_the_key(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache", config_id="node1")
    other = settings_for(conf, tmp_path / "cache", "node2")
    assert other.cache_file() != settings.cache_file()
    assert stale(other) == "no_cache"
    with pytest.raises(Skip, match="stale_key:config_id"):
        check_key(read_cache(settings)["key"], other)


def test_version_change_invalidates(conf: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    settings = written(conf, tmp_path / "cache")
    monkeypatch.setattr(fast_start, "__version__", "99.0")
    assert stale(settings) == "stale_key:version"


def test_source_change_invalidates(conf: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    settings = written(conf, tmp_path / "cache")
    digest = fast_start.source_digest()
    # a module that decides the bytes changed on disk (size/mtime): a new digest
    monkeypatch.setattr(fast_start, "_SOURCES", (*fast_start._SOURCES, "vrrpd/cli.py"))
    assert fast_start.source_digest() != digest
    assert stale(settings) == "stale_key:sources"


@pytest.mark.parametrize("mode", [0o620, 0o602])
def test_group_or_world_writable_cache_file_is_refused(conf: Path, tmp_path: Path,
                                                       mode: int) -> None:
    settings = written(conf, tmp_path / "cache")
    os.chmod(settings.cache_file(), mode)
    assert stale(settings) == "unsafe_cache_file"


def test_world_writable_cache_dir_is_refused(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    os.chmod(tmp_path / "cache", 0o777)
    assert stale(settings) == "unsafe_cache_dir"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_cache_file_of_another_user_is_refused(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    os.chown(settings.cache_file(), 65534, -1)
    assert stale(settings) == "unsafe_cache_file"


def test_symlinked_cache_file_is_refused(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    real = tmp_path / "elsewhere"
    os.rename(settings.cache_file(), real)
    os.symlink(real, settings.cache_file())
    assert stale(settings) == "no_cache"  # O_NOFOLLOW


def test_garbage_cache_is_refused(conf: Path, tmp_path: Path) -> None:
    settings = written(conf, tmp_path / "cache")
    Path(settings.cache_file()).write_bytes(b"\x00not marshal")
    assert stale(settings) == "bad_cache"


def test_writer_refuses_an_unsafe_directory(conf: Path, tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir(mode=0o777)
    os.chmod(tmp_path / "cache", 0o777)
    with pytest.raises(PermissionError):
        written(conf, tmp_path / "cache")


# ---------------------------------------------------------------- argv


def test_look_reads_the_options_it_needs() -> None:
    assert look(["-f", "/x.conf", "-n", "-C", "--config-id", "n1", "--cache-dir=/c",
                 "--log-level", "debug"]) == {"config": "/x.conf", "check": "1",
                                              "config_id": "n1", "cache_dir": "/c"}
    assert look(["--use-file=/y", "--no-cache", "-P"]) == {"config": "/y", "no_cache": "1",
                                                           "vrrp": "1"}


@pytest.mark.parametrize("argv", [["-f/x.conf"], ["--use", "/x"], ["-nC"], ["-f"], ["word"],
                                  ["--no-cache=1"]])
def test_look_refuses_what_it_does_not_fully_understand(argv: list[str]) -> None:
    assert look(argv) is None


def test_look_agrees_with_the_cli_parser() -> None:
    """Every option of vrrpd's parser is known to look() (else a new option silently turns
    the replay off), with the same need for a value."""
    from vrrpd.cli import build_parser

    for action in build_parser()._actions:
        for opt in action.option_strings:
            if action.nargs == 0:
                assert opt in fast_start._FLAG, opt
            else:
                assert opt in fast_start._VALUE, opt


def test_default_settings_follow_the_cli_defaults() -> None:
    s = fast_start.settings_from({})
    assert s.config == "/etc/keepalived/keepalived.conf"
    assert s.config_id == socket.gethostname().split(".", 1)[0]
    assert s.cache_dir == "/var/cache/vrrpd" and s.enabled


def test_outcome_handed_to_the_check_child(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = {"result": "replayed", "requests": 12, "reason": "x"}
    monkeypatch.setenv(fast_start.ENV_OUTCOME, fast_start._encode(outcome))
    monkeypatch.setenv(fast_start.ENV_ROLE, "check")
    monkeypatch.setattr(fast_start, "_looked", False)
    monkeypatch.setattr(fast_start, "STATE", None)
    monkeypatch.setattr(fast_start, "OUTCOME", None)
    fast_start.early(["-f", "/nonexistent.conf", "-n", "-C"])
    assert {**outcome, "by": "supervisor"} == fast_start.OUTCOME
    assert fast_start.ENV_OUTCOME not in os.environ


def test_early_skips_quietly_without_ipvs(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """This host's kernel has no IPVS: the outcome says so, and nothing raises."""
    monkeypatch.delenv(fast_start.ENV_OUTCOME, raising=False)
    monkeypatch.setattr(fast_start, "_looked", False)
    monkeypatch.setattr(fast_start, "STATE", None)
    monkeypatch.setattr(fast_start, "OUTCOME", None)
    fast_start.early(["-f", str(tmp_path / "k.conf"), "-C", "--cache-dir", str(tmp_path)])
    assert fast_start.OUTCOME is not None
    assert fast_start.OUTCOME["result"] == "skipped"
    assert str(fast_start.OUTCOME["reason"]).startswith("error:")
    assert "IPVS" in str(fast_start.OUTCOME["reason"])
    assert fast_start.STATE is not None and fast_start.STATE.cache_dir == str(tmp_path)


class RecordingIpvs:
    """ipvs.replay.IpvsSocket's interface over a recorded table (this host has no IPVS)."""

    services: ClassVar[int] = 0
    sent: ClassVar[list[tuple[bytes, list[bytes]]]] = []

    def __enter__(self) -> RecordingIpvs:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def service_count(self) -> int:
        return self.services

    def send(self, cmds: bytes, payloads: list[bytes]) -> tuple[int, int]:
        self.sent.append((cmds, list(payloads)))
        return len(payloads), 0


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingIpvs]:
    import ipvs.replay

    class Ipvs(RecordingIpvs):
        sent: ClassVar[list[tuple[bytes, list[bytes]]]] = []

    monkeypatch.setattr(ipvs.replay, "IpvsSocket", Ipvs)
    monkeypatch.delenv(fast_start.ENV_OUTCOME, raising=False)
    monkeypatch.setattr(fast_start, "_looked", False)
    monkeypatch.setattr(fast_start, "STATE", None)
    monkeypatch.setattr(fast_start, "OUTCOME", None)
    return Ipvs


PLAIN = """virtual_server 10.9.0.1 80 {
    protocol TCP
    lb_kind DR
    real_server 10.9.1.1 80 { weight 2 }
}
"""


@pytest.fixture
def plain_conf(tmp_path: Path) -> Path:
    """The config file, holding :data:`PLAIN`."""
    path = tmp_path / "k.conf"
    path.write_text(PLAIN)
    return path


def test_no_cache_plain_config_is_programmed_directly(
        tmp_path: Path, recording: type[RecordingIpvs], plain_conf: Path) -> None:
    from vrrpd.lvs_direct import requests_of

    fast_start.early(["-f", str(plain_conf), "-C", "--cache-dir", str(tmp_path / "c")])
    outcome = fast_start.OUTCOME
    assert outcome is not None and outcome["result"] == "direct", outcome
    assert outcome["cache"] == "no_cache" and outcome["requests"] == 2
    direct = requests_of(str(plain_conf))
    assert not isinstance(direct, str)
    assert recording.sent == [(direct[0], direct[1])]


def test_no_cache_option_still_programs_directly(recording: type[RecordingIpvs],
                                                 plain_conf: Path) -> None:
    fast_start.early(["-f", str(plain_conf), "-C", "--no-cache"])
    assert fast_start.OUTCOME is not None and fast_start.OUTCOME["result"] == "direct"
    assert fast_start.OUTCOME["cache"] == "disabled" and len(recording.sent) == 1


def test_config_the_direct_reader_refuses_sends_nothing(tmp_path: Path,
                                                        recording: type[RecordingIpvs]) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("include /etc/other.conf\n" + PLAIN)
    fast_start.early(["-f", str(conf), "-C", "--cache-dir", str(tmp_path / "c")])
    assert fast_start.OUTCOME is not None
    assert fast_start.OUTCOME["result"] == "skipped"
    assert fast_start.OUTCOME["reason"] == "no_cache, direct:include"
    assert recording.sent == []


def test_table_not_empty_sends_nothing(tmp_path: Path, recording: type[RecordingIpvs],
                                       plain_conf: Path) -> None:
    recording.services = 3
    fast_start.early(["-f", str(plain_conf), "-C", "--cache-dir", str(tmp_path / "c")])
    assert fast_start.OUTCOME is not None
    assert fast_start.OUTCOME["reason"] == "table_not_empty:3" and recording.sent == []


def test_no_fast_start_sends_nothing(recording: type[RecordingIpvs], plain_conf: Path) -> None:
    fast_start.early(["-f", str(plain_conf), "-C", "--no-fast-start"])
    assert fast_start.OUTCOME == {"result": "skipped", "reason": "disabled"}
    assert recording.sent == []


def test_outcome_of_a_direct_start_survives_the_hand_over(
        tmp_path: Path, recording: type[RecordingIpvs], plain_conf: Path) -> None:
    fast_start.early(["-f", str(plain_conf), "-C", "--cache-dir", str(tmp_path / "c")])
    before = fast_start.OUTCOME
    assert before is not None
    assert fast_start._decode(fast_start.child_env()[fast_start.ENV_OUTCOME]) == {
        k: (v if not isinstance(v, float) else str(v)) for k, v in before.items()}


@pytest.mark.parametrize("argv", [["-t", "-f", "/x"], ["-P", "-f", "/x"], ["status"]])
def test_early_does_nothing_where_no_ipvs_runs(argv: list[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_start, "_looked", False)
    monkeypatch.setattr(fast_start, "STATE", None)
    monkeypatch.setattr(fast_start, "OUTCOME", None)
    fast_start.early(argv)
    assert fast_start.STATE is None and fast_start.OUTCOME is None


def test_status_shows_the_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    from vrrpd.lvs import LvsStats
    from vrrpd.status_adapters import lvs_stats

    class Lvs:
        stats = LvsStats()
        owned = frozenset()

    monkeypatch.setattr(fast_start, "OUTCOME", None)
    assert lvs_stats(Lvs())["fast_start"] is None
    monkeypatch.setattr(fast_start, "OUTCOME", {"result": "replayed", "requests": 5,
                                                "failed": 0, "seconds": 0.25})
    assert lvs_stats(Lvs())["fast_start"] == "result=replayed requests=5 failed=0 seconds=0.25"
