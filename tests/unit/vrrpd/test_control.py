"""Control socket: a real unix socket, real peers (including another uid), real CLI client."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from vrrpd.control import MAX_REQUEST, ControlServer, request, status_main
from vrrpd.status import DaemonStatus, ReloadStats

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by other users (the venv's lives under /root)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A directory others may traverse (tmp_path's parents are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="st-ctl-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def server(sock_dir: Path) -> AsyncIterator[ControlServer]:
    reloads = ReloadStats()
    reloads.record(False, ["bad.conf:1:1: unknown keyword"], at=1.0)
    status = DaemonStatus(reloads=reloads, router_id="dir1")
    srv = ControlServer(sock_dir / "run" / "vrrpd.ctl", status=status.document)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def _exchange(path: Path, *lines: bytes) -> list[dict]:  # type: ignore[type-arg]
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        replies = []
        for line in lines:
            writer.write(line)
            await writer.drain()
            replies.append(json.loads(await asyncio.wait_for(reader.readline(), 5)))
        return replies
    finally:
        writer.close()
        await writer.wait_closed()


async def test_socket_is_0600_and_answers_status(server: ControlServer) -> None:
    st = server.path.lstat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    reply = await asyncio.to_thread(request, server.path, {"cmd": "status"})
    assert reply["ok"] is True
    doc = reply["status"]
    assert doc["version"] == 1 and doc["daemon"]["pid"] == os.getpid()
    assert doc["daemon"]["router_id"] == "dir1"
    assert doc["reloads"]["last_result"] == "failed"
    assert doc["reloads"]["errors"] == ["bad.conf:1:1: unknown keyword"]


async def test_bad_requests_get_error_replies_and_the_connection_survives(
        server: ControlServer) -> None:
    bad_json, not_object, unknown, ping = await _exchange(
        server.path, b"this is not json\n", b"[1, 2]\n", b'{"cmd": "frobnicate"}\n',
        b'{"cmd": "ping"}\n')
    assert bad_json["ok"] is False and bad_json["error"].startswith("invalid JSON")
    assert not_object["ok"] is False and "JSON object" in not_object["error"]
    assert unknown == {"ok": False, "error": "unknown command 'frobnicate'",
                       "commands": ["ping", "status"]}
    assert ping == {"ok": True, "pid": os.getpid()}
    assert server.errors == 3 and server.requests == 4
    # still serving new connections
    (again,) = await _exchange(server.path, b'{"cmd": "ping"}\n')
    assert again["ok"] is True


async def test_oversized_request_is_refused_and_closed(server: ControlServer) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(b"x" * (MAX_REQUEST + 10) + b"\n")
    await writer.drain()
    reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
    assert reply["ok"] is False and "longer than" in reply["error"]
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()


async def test_handler_exception_is_an_error_reply(sock_dir: Path) -> None:
    def boom(_req: dict) -> dict:  # type: ignore[type-arg]
        raise RuntimeError("kaput")

    async with ControlServer(sock_dir / "c.ctl", commands={"boom": boom}) as srv:
        (reply,) = await _exchange(srv.path, b'{"cmd": "boom"}\n')
        assert reply == {"ok": False, "error": "boom failed: RuntimeError: kaput"}
        # the last request may lack its newline when the client half-closes
        reader, writer = await asyncio.open_unix_connection(str(srv.path))
        writer.write(b'{"cmd": "ping"}')
        writer.write_eof()
        assert json.loads(await asyncio.wait_for(reader.readline(), 5))["ok"] is True
        writer.close()


_PEER = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(json.dumps({"connect_error": e.errno})); sys.exit(0)
try:
    s.sendall(b'{"cmd": "status"}\\n')
except BrokenPipeError:
    pass  # a refused peer may be disconnected before it writes; the reply is still readable
data = b""
while not data.endswith(b"\\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode().strip() or json.dumps({"closed": True}))
"""


async def _as_nobody(path: Path) -> dict:  # type: ignore[type-arg]
    proc = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON, "-I", "-c", _PEER, str(path), user=NOBODY, group=NOBODY,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.skipif(os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="needs root and /usr/bin/python3 to run a peer as another uid")
async def test_other_uid_cannot_connect_nor_pass_peer_credentials(server: ControlServer
                                                                  ) -> None:
    import errno

    assert await _as_nobody(server.path) == {"connect_error": errno.EACCES}  # mode 0600
    server.path.chmod(0o666)  # even if someone loosens the mode, SO_PEERCRED refuses
    reply = await _as_nobody(server.path)
    assert reply == {"ok": False, "error": "permission denied"}
    assert server.denied == 1 and server.requests == 0


async def test_stale_socket_replaced_live_one_refused_regular_file_kept(
        sock_dir: Path) -> None:
    path = sock_dir / "vrrpd.ctl"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a crashed daemon's leftover
    async with ControlServer(path, status=DaemonStatus().document) as srv:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        with pytest.raises(RuntimeError, match="another daemon"):
            await ControlServer(path).start()
        (ping,) = await _exchange(srv.path, b'{"cmd": "ping"}\n')  # the first one still works
        assert ping["ok"] is True
    assert not path.exists()  # removed on stop
    path.write_text("not a socket")
    with pytest.raises(FileExistsError):
        await ControlServer(path).start()
    assert path.read_text() == "not a socket"


async def test_status_main_human_json_and_not_running(server: ControlServer,
                                                      sock_dir: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(status_main, ["--socket", str(server.path)], out=out,
                                   err=err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert text.startswith(f"vrrpd pid {os.getpid()}, router_id dir1")
    assert "last reload: failed" in text and "bad.conf:1:1: unknown keyword" in text

    out = io.StringIO()
    code = await asyncio.to_thread(status_main, ["--json", "--socket", str(server.path)],
                                   out=out)
    assert code == 0
    doc = json.loads(out.getvalue())
    assert doc["version"] == 1 and doc["instances"] == [] and doc["virtual_servers"] == []

    err = io.StringIO()
    code = status_main(["--socket", str(sock_dir / "missing.ctl")], out=io.StringIO(), err=err)
    assert code == 3
    assert "no such socket (is vrrpd running?)" in err.getvalue()
