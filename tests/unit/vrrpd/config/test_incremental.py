"""Incremental reload == a load from scratch, for random edits; and the short way is taken."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrrpd.config.incremental import (
    IncrementalLoader,
    common_prefix,
    common_suffix,
    is_plain,
    reloader,
)
from vrrpd.config.loader import LoadResult, load

ETC = Path(__file__).resolve().parents[4] / "etc"
SEEDS = sorted(p.read_text() for p in ETC.glob("*.conf"))


def make_config(services: int, dests: int, *, instances: int = 2) -> str:
    """A config using every kind of block, with cross-block references."""
    out = ["! generated", "global_defs {", "    router_id gen", "    smtp_alert_checker", "}",
           "vrrp_script chk {", "    script \"/bin/true\"", "    interval 2", "}",
           "track_file tf {", "    file /tmp/tf-incr", "}",
           "virtual_server_group G1 {", "    10.9.0.1 80", "}"]
    for i in range(instances):
        out += [f"vrrp_instance VI_{i} {{", "    state BACKUP", "    interface eth0",
                f"    virtual_router_id {10 + i}", f"    priority {100 + i}",
                "    track_script {", "        chk", "    }",
                "    virtual_ipaddress {", f"        10.8.0.{i + 1}/24", "    }", "}"]
    if instances > 1:
        out += ["vrrp_sync_group SG {", "    group {", "        VI_0", "        VI_1", "    }", "}"]
    out += ["virtual_server group G1 {", "    lb_algo rr", "    lb_kind NAT",
            "    protocol TCP", "    real_server 10.7.0.1 80 {", "        weight 1", "    }", "}"]
    for s in range(services):
        out += [f"virtual_server 10.0.{s // 250}.{s % 250 + 1} 80 {{", "    lb_algo wrr",
                "    lb_kind DR", "    protocol TCP", "    delay_loop 5"]
        for d in range(dests):
            out += [f"    real_server 10.1.{s % 250}.{d + 1} 80 {{", f"        weight {d + 1}"]
            if d % 3 == 0:
                out += ["        TCP_CHECK {", "            connect_timeout 3", "        }"]
            elif d % 3 == 1:
                out += ["        FILE_CHECK {", "            track_file tf", "        }"]
            out += ["    }"]
        out += ["}"]
    return "\n".join(out) + "\n"


INSERTS = [
    "    weight 5", "}", "{", "# a comment", "! another", "", "    lb_algo rr",
    "    real_server 10.1.0.99 80 {", "    notify_master /bin/true", "weight 2 {", "bogus_keyword",
    "    include /nonexistent/x.conf", "$X=1", "    priority $X", "@other priority 50",
    "~SEQ(i, 1, 2) weight $i", "virtual_server 10.0.9.9 80 {", "\"unterminated",
    "    real_server 10.1.0.98 80 {\n        weight 3\n    }",
    "virtual_server 10.0.9.8 81 {\n  protocol TCP\n  real_server 10.1.9.1 81 {\n  }\n}",
    "vrrp_script chk {\n    script /bin/false\n}", "    TCP_CHECK {\n    }",
    "    FILE_CHECK {\n        track_file nosuch\n    }",
    "vrrp_instance VI_0 {\n    interface eth0\n    virtual_router_id 10\n}",
    "} virtual_server_group G2 {", "vrrp_script s2 { script /bin/true } track_file t2 { file /x }",
    "} }", "real_server 10.1.0.97 80 { weight 4 } }",
]
GDEFS_LINES = ["    smtp_alert", "    vrrp_version 3", "    router_id other",
               "    enable_script_security", "    vrrp_garp_master_delay 2", "    bogus 1"]

# One edit: (operation, where as a fraction of the file, which payload)
EDIT = st.tuples(st.sampled_from(["value", "delete", "insert", "gdefs", "drop_rs", "dup_block"]),
                 st.floats(0, 1, allow_nan=False), st.integers(0, 1000))


def apply_edit(text: str, edit: tuple[str, float, int]) -> str:
    op, where, k = edit
    lines = text.split("\n")
    at = min(int(where * len(lines)), len(lines) - 1)
    if op == "value":
        for i in range(at, len(lines)):
            words = lines[i].split()
            digits = [j for j, w in enumerate(words) if w.isdigit()]
            if digits:
                words[digits[k % len(digits)]] = str(k % 300)
                lines[i] = "    " + " ".join(words)
                break
    elif op == "delete":
        del lines[at]
    elif op == "insert":
        lines[at:at] = INSERTS[k % len(INSERTS)].split("\n")
    elif op == "gdefs":
        if "global_defs {" in lines:
            lines.insert(lines.index("global_defs {") + 1, GDEFS_LINES[k % len(GDEFS_LINES)])
    elif op in ("drop_rs", "dup_block"):
        opener = "    real_server" if op == "drop_rs" else "virtual_server"
        closer = "    }" if op == "drop_rs" else "}"
        start = next((i for i in range(at, len(lines)) if lines[i].startswith(opener)), None)
        if start is not None:
            end = next((i for i in range(start + 1, len(lines)) if lines[i] == closer), None)
            if end is not None:
                block = lines[start:end + 1]
                if op == "drop_rs":
                    del lines[start:end + 1]
                else:
                    lines[end + 1:end + 1] = block
    return "\n".join(lines)


def same(a: LoadResult, b: LoadResult) -> None:
    """Equal, positions included (the model's ``pos`` fields do not take part in ==)."""
    assert a.diagnostics == b.diagnostics
    assert a.config == b.config
    assert repr(a.config) == repr(b.config)


def check_sequence(texts: list[str]) -> list[str]:
    """Load ``texts`` one after the other into one file; each reload must equal a fresh load."""
    modes = []
    with tempfile.TemporaryDirectory(prefix="incr-") as d:
        path = Path(d) / "keepalived.conf"
        loader = IncrementalLoader(path, config_id="node1")
        for text in texts:
            path.write_text(text)
            got = loader.load()
            same(got, load(path, config_id="node1"))
            modes.append(loader.stats.mode)
    return modes


# Blocks sharing lines: a node ends where the next one starts.
COMPACT = make_config(3, 2).replace("\n}\nvirtual_server", "\n} virtual_server").replace(
    "\n        weight", " weight").replace("{\n    10.9.0.1 80\n}", "{ 10.9.0.1 80 }")
BASES = [*SEEDS, make_config(3, 3), make_config(2, 4, instances=1), COMPACT]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASES), steps=st.lists(st.lists(EDIT, min_size=1, max_size=3),
                                                    min_size=1, max_size=3))
def test_reload_equals_full_load(base: str, steps: list[list[tuple[str, float, int]]]) -> None:
    texts = [base]
    for edits in steps:
        text = texts[-1]
        for edit in edits:
            text = apply_edit(text, edit)
        texts.append(text)
    check_sequence(texts)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(EDIT, min_size=1, max_size=2))
def test_reload_equals_full_load_bigger(edits: list[tuple[str, float, int]]) -> None:
    base = make_config(40, 5)
    text = base
    for edit in edits:
        text = apply_edit(text, edit)
    check_sequence([base, text])


@given(a=st.lists(st.sampled_from("abc"), max_size=12), b=st.lists(st.sampled_from("abc"),
                                                                     max_size=12))
def test_common_prefix_and_suffix(a: list[str], b: list[str]) -> None:
    p = common_prefix(a, b)
    assert a[:p] == b[:p] and (p == min(len(a), len(b)) or a[p] != b[p])
    limit = min(len(a), len(b)) - p
    s = common_suffix(a, b, limit)
    assert s <= limit and a[len(a) - s:] == b[len(b) - s:]
    assert s == limit or a[len(a) - s - 1] != b[len(b) - s - 1]


def _weight_edit(text: str, nth: int) -> str:
    """``weight N`` -> ``weight 77`` on the nth line that sets a weight."""
    lines = text.split("\n")
    i = [i for i, line in enumerate(lines) if re.search(r"\bweight \d+", line)][nth]
    lines[i] = re.sub(r"\bweight \d+", "weight 77", lines[i])
    return "\n".join(lines)


def test_one_value_change_reparses_one_block(tmp_path: Path) -> None:
    base = make_config(300, 10)
    path = tmp_path / "k.conf"
    path.write_text(base)
    loader = IncrementalLoader(path, config_id="n")
    first = loader.load()
    assert loader.stats.mode == "full"
    path.write_text(_weight_edit(base, 1500))
    got = loader.load()
    stats = loader.stats
    assert stats.mode == "incremental", stats
    assert stats.reparsed_nodes == 1 and stats.reparsed_lines < 60, stats
    # every other top-level block: the virtual servers and 7 others, less the one re-parsed
    assert stats.reused_nodes == len(first.config.virtual_servers) + 7 - 1
    same(got, load(path, config_id="n"))
    # Unchanged virtual servers are the very same objects (LvsRunner skips them cheaply).
    old_vs, new_vs = first.config.virtual_servers, got.config.virtual_servers
    changed = [i for i, (a, b) in enumerate(zip(old_vs, new_vs, strict=True)) if a is not b]
    assert len(changed) == 1 and old_vs[changed[0]] != new_vs[changed[0]]
    assert any(rs.weight == 77 for rs in new_vs[changed[0]].real_servers)
    # The same text again: nothing parsed.
    again = loader.load()
    assert loader.stats.mode == "unchanged" and again is got


def test_inserted_line_reparses_what_moved(tmp_path: Path) -> None:
    base = make_config(20, 3)
    lines = base.split("\n")
    mid = len(lines) // 2
    while not lines[mid].startswith("virtual_server"):
        mid += 1
    lines.insert(mid, "# a new comment above a block")
    path = tmp_path / "k.conf"
    path.write_text(base)
    loader = IncrementalLoader(path, config_id="n")
    loader.load()
    path.write_text("\n".join(lines))
    got = loader.load()
    assert loader.stats.mode == "incremental"
    assert 0 < loader.stats.reparsed_lines < len(lines) * 0.7
    same(got, load(path, config_id="n"))


def test_global_defs_change_rebuilds_without_reparsing(tmp_path: Path) -> None:
    base = make_config(5, 2)
    path = tmp_path / "k.conf"
    path.write_text(base)
    loader = IncrementalLoader(path, config_id="n")
    first = loader.load()
    path.write_text(base.replace("    smtp_alert_checker", "    smtp_alert_checker off"))
    got = loader.load()
    assert loader.stats.mode == "incremental" and loader.stats.reparsed_nodes == 1
    same(got, load(path, config_id="n"))
    assert got.config.global_defs != first.config.global_defs
    assert all(not vs.smtp_alert for vs in got.config.virtual_servers)
    assert all(vs.smtp_alert for vs in first.config.virtual_servers)


@pytest.mark.parametrize(("edit", "reason"), [
    ("$X=1\n", "$, @, ~ or include"),
    ("include /nonexistent/x.conf\n", "$, @, ~ or include"),
    ("@n global_defs {\n}\n", "$, @, ~ or include"),
    ("virtual_server 10.0.9.9 80 {\n", "syntax diagnostic"),
    ("}\n", "syntax diagnostic"),
])
def test_falls_back_to_a_full_parse(tmp_path: Path, edit: str, reason: str) -> None:
    base = make_config(4, 2)
    path = tmp_path / "k.conf"
    path.write_text(base)
    loader = IncrementalLoader(path, config_id="n")
    loader.load()
    cut = base.index("virtual_server 10.0.0.2")
    path.write_text(base[:cut] + edit + base[cut:])
    got = loader.load()
    assert loader.stats.mode == "full" and reason in loader.stats.reason, loader.stats
    same(got, load(path, config_id="n"))
    # and back: the previous load had a problem (or was not plain), so full again
    path.write_text(base)
    same(loader.load(), load(path, config_id="n"))
    assert loader.stats.mode == "full"


def test_brace_line_attaching_to_the_previous_keyword_falls_back(tmp_path: Path) -> None:
    base = "bogus_top\nvirtual_server_group G {\n  10.0.0.1 80\n}\n"
    path = tmp_path / "k.conf"
    path.write_text(base)
    loader = IncrementalLoader(path, config_id="n")
    loader.load()
    path.write_text(base.replace("virtual_server_group G {", "{"))  # '{' joins bogus_top
    same(loader.load(), load(path, config_id="n"))
    assert loader.stats.mode == "full"


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "k.conf"
    loader = reloader(path, "n")
    assert reloader(path, "n") is loader
    same(loader.load(), load(path, config_id="n"))
    path.write_text(make_config(1, 1))
    same(loader.load(), load(path, config_id="n"))
    assert loader.stats.mode == "full"


def test_is_plain() -> None:
    assert is_plain("global_defs {\n  notification_email {\n    a@b.c\n  }\n}\n")
    assert is_plain("weight 1 # ~SEQ in a comment is after a word\n")
    assert not is_plain("  @node1 weight 2\n")
    assert not is_plain("\t~SEQ(i, 1, 2) weight $i\n")
    assert not is_plain("includem /etc/x\n")
    assert not is_plain("weight ${W}\n")


def test_blocks_sharing_lines_take_the_short_way(tmp_path: Path) -> None:
    # "} virtual_server ... {": the edited block shares its first and last line with its
    # neighbours; the chain of blocks linked that way (vrrp_sync_group, the group virtual
    # server and the three virtual servers) is parsed again, the 6 blocks above are not.
    path = tmp_path / "k.conf"
    path.write_text(COMPACT)
    loader = IncrementalLoader(path, config_id="n")
    loader.load()
    path.write_text(_weight_edit(COMPACT, 3))  # in the second of three virtual servers
    got = loader.load()
    assert loader.stats.mode == "incremental", loader.stats
    assert (loader.stats.reparsed_nodes, loader.stats.reused_nodes) == (5, 6)
    same(got, load(path, config_id="n"))


def test_reload_records_the_inputs_a_load_records(tmp_path: Path) -> None:
    """The IPVS start cache keys on ``last_inputs`` (file digests): a reload, short way or
    not, must leave what ``load`` would."""
    from vrrpd.config.inputs import last_inputs

    base = make_config(3, 2)
    path = tmp_path / "k.conf"
    path.write_text(base)
    loader = IncrementalLoader(path, config_id="n")
    loader.load()
    for text in (_weight_edit(base, 2), _weight_edit(base, 2)):  # incremental, then unchanged
        path.write_text(text)
        loader.load()
        mine = last_inputs(str(path), "n")
        load(path, config_id="n")
        theirs = last_inputs(str(path), "n")
        assert mine is not None and theirs is not None and mine is not theirs
        assert mine.files and (mine.main, mine.files, mine.patterns, mine.deterministic) == \
            (theirs.main, theirs.files, theirs.patterns, theirs.deterministic)
    assert loader.stats.mode == "unchanged"
