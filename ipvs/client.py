"""Async IPVS client over generic netlink (pyroute2's transport, our own messages).

    async with IPVSClient() as ipvs:
        await ipvs.new_service(service)
        await ipvs.new_dest(service.key, dest)
        for observed in await ipvs.dump_services():
            ...

One request is in flight at a time per client (a lock): the kernel answers one dump at a time
per socket.  Every failure is an ``ipvs.errors`` exception naming the operation; kernel EINVAL and
ERANGE are mapped to ``InvalidArgument`` with the field the kernel objected to, and values the
kernel would reject are caught before sending.  The socket lives in the network namespace of
the thread that opens the client (or ``netns=NAME``, via pyroute2).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, genlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import AsyncGenericNetlinkSocket

from . import netlink as nl
from . import replies
from .errors import (
    Exists,
    InvalidArgument,
    IPVSError,
    IPVSPermissionError,
    IPVSUnavailable,
    NotFound,
)
from .model import (
    Destination,
    DestKey,
    Forward,
    IPVSInfo,
    ObservedDestination,
    ObservedService,
    Service,
    ServiceKey,
    SyncDaemon,
    SyncState,
    Timeouts,
    TunnelFlag,
    TunnelType,
    canonical_flags,
)

U16 = 0xFFFF
U32 = 0xFFFFFFFF
SCHEDNAME_MAXLEN = 16  # including the NUL
IFNAME_MAXLEN = 16


class IPVSReply(genlmsg):
    """A reply of the IPVS family: genl header decoded, attributes kept in ``payload``
    (decoded by ``ipvs.replies``)."""

    nla_map = ((0, "IPVS_ATTR_UNSPEC", "none"),)  # non-empty, or pyroute2 skips decode_nlas

    def decode_nlas(self, offset: int) -> None:
        self.payload = bytes(self.data[offset : self.offset + self.length])
        self["attrs"] = []


class IPVSClient:
    def __init__(self, *, netns: str | None = None) -> None:
        self._netns = netns
        self._sock: AsyncGenericNetlinkSocket | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> IPVSClient:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def open(self) -> None:
        """Create the socket and resolve the "IPVS" family (IPVSUnavailable if it is missing)."""
        async with self._lock:
            await self._open_locked()

    async def _open_locked(self) -> None:
        if self._sock is not None:
            return
        kwargs: dict[str, Any] = {"netns": self._netns} if self._netns else {}
        sock = AsyncGenericNetlinkSocket(**kwargs)
        try:
            await sock.setup_endpoint()
            await sock.bind(nl.FAMILY, IPVSReply)
        except NetlinkError as exc:
            sock.close()
            if exc.code in (errno.ENOENT, errno.ENOTSUP):
                raise IPVSUnavailable(
                    "the kernel has no IPVS (no generic-netlink family 'IPVS': modprobe ip_vs)",
                    operation="open", errno=exc.code,
                ) from exc
            raise _map(exc.code, "open") from exc
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ------------------------------------------------------------ services

    async def new_service(self, service: Service) -> None:
        _check_service(service, "new_service")
        await self._do("new_service", nl.Cmd.NEW_SERVICE, _svc(service), service=service)

    async def set_service(self, service: Service) -> None:
        """Replace every attribute of an existing service (never a partial update)."""
        _check_service(service, "set_service")
        await self._do("set_service", nl.Cmd.SET_SERVICE, _svc(service), service=service)

    async def delete_service(self, key: ServiceKey) -> None:
        _check_key(key, "delete_service")
        await self._do("delete_service", nl.Cmd.DEL_SERVICE, _svc_key(key), key=key)

    async def get_service(self, key: ServiceKey, *, dests: bool = True) -> ObservedService:
        """One service (NotFound if absent), with its destinations unless ``dests=False``."""
        _check_key(key, "get_service")
        found = [replies.service(p) for p in await self._do(
            "get_service", nl.Cmd.GET_SERVICE, _svc_key(key), key=key, want=replies.CMD_SERVICE)]
        if not found:
            raise NotFound(f"service {_key_text(key)} does not exist", operation="get_service")
        service = found[0]
        if dests:
            return _with_dests(service, await self.dump_dests(key))
        return service

    async def dump_services(self, *, dests: bool = True) -> list[ObservedService]:
        """Every service in the namespace (one dump), each with its destinations by default."""
        services = [replies.service(p) for p in await self._do(
            "dump_services", nl.Cmd.GET_SERVICE, [], dump=True, want=replies.CMD_SERVICE)]
        if not dests:
            return services
        out = []
        for service in services:
            try:
                found = await self.dump_dests(service.service.key)
            except NotFound:  # deleted between the two dumps
                continue
            out.append(_with_dests(service, found))
        return out

    # ------------------------------------------------------------ destinations

    async def new_dest(self, key: ServiceKey, dest: Destination) -> None:
        _check_key(key, "new_dest")
        _check_dest(dest, "new_dest")
        await self._do("new_dest", nl.Cmd.NEW_DEST, _svc_key(key) + _dest(key, dest),
                       key=key, dest=dest)

    async def set_dest(self, key: ServiceKey, dest: Destination) -> None:
        _check_key(key, "set_dest")
        _check_dest(dest, "set_dest")
        await self._do("set_dest", nl.Cmd.SET_DEST, _svc_key(key) + _dest(key, dest),
                       key=key, dest=dest)

    async def delete_dest(self, key: ServiceKey, dest: DestKey) -> None:
        _check_key(key, "delete_dest")
        attrs = [("IPVS_CMD_ATTR_DEST", {"attrs": nl.dest_key_attrs(key.af, dest)})]
        await self._do("delete_dest", nl.Cmd.DEL_DEST, _svc_key(key) + attrs, key=key)

    async def get_dest(self, key: ServiceKey, dest: DestKey) -> ObservedDestination:
        for observed in await self.dump_dests(key):
            if observed.dest.key == dest:
                return observed
        raise NotFound(f"destination {_dest_text(dest)} of {_key_text(key)} does not exist",
                       operation="get_dest")

    async def dump_dests(self, key: ServiceKey) -> list[ObservedDestination]:
        _check_key(key, "dump_dests")
        found = await self._do("dump_dests", nl.Cmd.GET_DEST, _svc_key(key), dump=True, key=key,
                               want=replies.CMD_DEST)
        return [replies.dest(p, key.af) for p in found]

    # ------------------------------------------------------------ whole table

    async def flush(self) -> None:
        """Delete every service of the namespace (ipvsadm -C)."""
        await self._do("flush", nl.Cmd.FLUSH, [])

    async def zero(self, key: ServiceKey | None = None) -> None:
        """Zero the counters of one service, or of all (ipvsadm -Z)."""
        await self._do("zero", nl.Cmd.ZERO, _svc_key(key) if key is not None else [], key=key)

    async def info(self) -> IPVSInfo:
        (top,) = await self._do("info", nl.Cmd.GET_INFO, [])
        return replies.info(top)

    async def get_timeouts(self) -> Timeouts:
        (top,) = await self._do("get_timeouts", nl.Cmd.GET_CONFIG, [])
        return replies.timeouts(top)

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        """ipvsadm --set: 0 leaves that timeout unchanged."""
        for name in ("tcp", "tcp_fin", "udp"):
            _range(getattr(timeouts, name), 0, U32, name, "set_timeouts")
        await self._do("set_timeouts", nl.Cmd.SET_CONFIG, nl.timeout_attrs(timeouts))

    # ------------------------------------------------------------ sync daemons

    async def new_daemon(self, daemon: SyncDaemon) -> None:
        _check_daemon(daemon, "new_daemon")
        attrs = [("IPVS_CMD_ATTR_DAEMON", {"attrs": nl.daemon_attrs(daemon)})]
        await self._do("new_daemon", nl.Cmd.NEW_DAEMON, attrs, daemon=daemon)

    async def delete_daemon(self, state: SyncState) -> None:
        attrs = [("IPVS_CMD_ATTR_DAEMON",
                  {"attrs": [("IPVS_DAEMON_ATTR_STATE", int(SyncState(state)))]})]
        await self._do("delete_daemon", nl.Cmd.DEL_DAEMON, attrs)

    async def dump_daemons(self) -> list[SyncDaemon]:
        found = await self._do("dump_daemons", nl.Cmd.GET_DAEMON, [], dump=True,
                               want=replies.CMD_DAEMON)
        return [replies.daemon(p) for p in found]

    # ------------------------------------------------------------ transport

    async def _do(
        self, op: str, cmd: nl.Cmd, attrs: list[tuple[str, Any]], *, dump: bool = False,
        want: int | None = None, **context: Any,
    ) -> list[bytes]:
        """Send one request; the raw attributes of each reply (or, with ``want``, the payload
        of that nested top-level attribute of each reply that has it)."""
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        async with self._lock:
            await self._open_locked()  # lazily, on first use
            sock = self._sock
            assert sock is not None
            prid = sock.prid
            try:
                answer = await sock.nlm_request(nl.request(cmd, attrs), msg_type=prid,
                                                msg_flags=flags)
                # replies carry the kernel's own cmd (GET_INFO -> SET_INFO, ...): match by family
                tops = [m.payload async for m in answer if m["header"]["type"] == prid]
            except NetlinkError as exc:
                raise _map(exc.code, op, **context) from exc
        if want is None:
            return tops
        return [p for p in (replies.nested(top, want) for top in tops) if p is not None]


# ---------------------------------------------------------------- request helpers


def _svc(service: Service) -> list[tuple[str, Any]]:
    return [("IPVS_CMD_ATTR_SERVICE", {"attrs": nl.service_attrs(service)})]


def _svc_key(key: ServiceKey) -> list[tuple[str, Any]]:
    return [("IPVS_CMD_ATTR_SERVICE", {"attrs": nl.service_key_attrs(key)})]


def _dest(key: ServiceKey, dest: Destination) -> list[tuple[str, Any]]:
    return [("IPVS_CMD_ATTR_DEST", {"attrs": nl.dest_attrs(key.af, dest)})]


def _with_dests(service: ObservedService, dests: list[ObservedDestination]) -> ObservedService:
    return ObservedService(service=service.service, dests=tuple(dests), stats=service.stats)


def _key_text(key: ServiceKey) -> str:
    if key.fwmark:
        return f"FWM {key.fwmark}" + (" IPv6" if key.af == socket.AF_INET6 else "")
    assert key.protocol is not None
    addr = f"[{key.addr}]" if key.af == socket.AF_INET6 else str(key.addr)
    return f"{key.protocol.name} {addr}:{key.port}"


def _dest_text(dest: DestKey) -> str:
    addr = f"[{dest.addr}]" if dest.addr.version == 6 else str(dest.addr)
    return f"{addr}:{dest.port}"


# ---------------------------------------------------------------- validation (before sending)


def _range(value: int, low: int, high: int, field: str, op: str) -> None:
    if not low <= value <= high:
        raise InvalidArgument(f"{field}={value} is outside {low}..{high}", field=field,
                              operation=op)


def _family(af: int, op: str) -> int:
    if af == socket.AF_INET:
        return 4
    if af == socket.AF_INET6:
        return 6
    raise InvalidArgument(f"address family {af} is neither AF_INET nor AF_INET6", field="af",
                          operation=op)


def _check_key(key: ServiceKey, op: str) -> None:
    version = _family(key.af, op)
    if key.fwmark:
        _range(key.fwmark, 1, U32, "fwmark", op)
        return
    assert key.addr is not None
    if key.addr.version != version:
        raise InvalidArgument(f"address {key.addr} does not match af={key.af}", field="addr",
                              operation=op)
    _range(key.port, 0, U16, "port", op)


def _check_service(service: Service, op: str) -> None:
    _check_key(service.key, op)
    if not service.scheduler or len(service.scheduler.encode()) >= SCHEDNAME_MAXLEN:
        raise InvalidArgument(f"scheduler name {service.scheduler!r} is empty or too long",
                              field="scheduler", operation=op)
    if len(service.pe_name.encode()) >= SCHEDNAME_MAXLEN:
        raise InvalidArgument(f"pe_name {service.pe_name!r} is too long", field="pe_name",
                              operation=op)
    try:
        canonical_flags(service.flags)
    except ValueError as exc:
        raise InvalidArgument(str(exc), field="flags", operation=op) from None
    _range(service.timeout, 0, U32, "timeout", op)
    if service.key.af == socket.AF_INET6:
        _range(service.netmask, 1, 128, "netmask", op)
    else:
        _range(service.netmask, 0, 32, "netmask", op)


def _check_dest(dest: Destination, op: str) -> None:
    if dest.af:
        version = _family(dest.af, op)
        if dest.key.addr.version != version:
            raise InvalidArgument(f"destination {dest.key.addr} does not match af={dest.af}",
                                  field="af", operation=op)
    _range(dest.key.port, 0, U16, "port", op)
    _range(dest.weight, 0, 0x7FFFFFFF, "weight", op)
    _range(dest.u_threshold, 0, U32, "u_threshold", op)
    _range(dest.l_threshold, 0, U32, "l_threshold", op)
    _range(dest.tun_port, 0, U16, "tun_port", op)
    _range(dest.tun_flags, 0, U16, "tun_flags", op)


def _check_daemon(daemon: SyncDaemon, op: str) -> None:
    if not daemon.mcast_ifn or len(daemon.mcast_ifn.encode()) >= IFNAME_MAXLEN:
        raise InvalidArgument(f"mcast_ifn {daemon.mcast_ifn!r} is empty or too long",
                              field="mcast_ifn", operation=op)
    _range(daemon.sync_id, 0, U32, "sync_id", op)
    _range(daemon.sync_maxlen, 0, U16, "sync_maxlen", op)
    _range(daemon.mcast_port, 0, U16, "mcast_port", op)
    _range(daemon.mcast_ttl, 0, 255, "mcast_ttl", op)


# ---------------------------------------------------------------- kernel errors


def _map(code: int, op: str, *, service: Service | None = None, key: ServiceKey | None = None,
         dest: Destination | None = None, daemon: SyncDaemon | None = None) -> IPVSError:
    """A kernel errno for operation ``op`` -> the exception a caller can act on."""
    if service is not None:
        key = service.key
    what = _key_text(key) if key is not None else "IPVS"
    if code in (errno.EPERM, errno.EACCES):
        return IPVSPermissionError("CAP_NET_ADMIN is required", operation=op, errno=code)
    if code == errno.EEXIST:
        thing = {"new_dest": f"destination {_dest_text(dest.key) if dest else ''} of {what}",
                 "new_daemon": "sync daemon"}.get(op, f"service {what}")
        return Exists(f"{thing} already exists", operation=op, errno=code)
    if code == errno.ESRCH:
        return NotFound(f"service {what} does not exist", operation=op, errno=code)
    if code == errno.ENOENT:
        if op in ("new_service", "set_service") and service is not None:
            if service.pe_name:
                return InvalidArgument(
                    f"scheduler {service.scheduler!r} or persistence engine "
                    f"{service.pe_name!r} is not available", field="scheduler/pe_name",
                    operation=op, errno=code)
            return InvalidArgument(f"scheduler {service.scheduler!r} is not available",
                                   field="scheduler", operation=op, errno=code)
        if op in ("set_dest", "delete_dest"):
            return NotFound(f"destination does not exist in {what}", operation=op, errno=code)
        return NotFound(f"{op}: not found", operation=op, errno=code)
    if code == errno.ENODEV and daemon is not None:
        return InvalidArgument(f"interface {daemon.mcast_ifn!r} does not exist",
                               field="mcast_ifn", operation=op, errno=code)
    if code in (errno.EINVAL, errno.ERANGE, errno.EAFNOSUPPORT):
        field, reason = _diagnose(code, op, service=service, key=key, dest=dest)
        return InvalidArgument(reason, field=field, operation=op, errno=code)
    return IPVSError(f"{op} failed: {errno.errorcode.get(code, code)}", operation=op,
                     errno=code)


def _diagnose(code: int, op: str, *, service: Service | None, key: ServiceKey | None,
              dest: Destination | None) -> tuple[str, str]:
    """Which field the kernel refused (it only says EINVAL/ERANGE): its checks, in its order."""
    if dest is not None and key is not None:
        if code == errno.ERANGE:
            if dest.l_threshold > dest.u_threshold:
                return "l_threshold", (f"lower threshold {dest.l_threshold} is above the upper "
                                       f"threshold {dest.u_threshold}")
            return "weight", f"weight {dest.weight} is out of range"
        if dest.tun_type == TunnelType.GUE and dest.forward == Forward.TUN and not dest.tun_port:
            return "tun_port", "a GUE tunnel needs a non-zero tun_port"
        both = TunnelFlag.CSUM | TunnelFlag.REMCSUM
        if dest.forward == Forward.TUN and dest.tun_flags & both == both:
            return "tun_flags", "tunnel csum and remcsum cannot both be set"
        dest_version = dest.key.addr.version
        key_version = 6 if key.af == socket.AF_INET6 else 4
        if dest_version != key_version and dest.forward != Forward.TUN:
            return "af", (f"an IPv{dest_version} destination in an IPv{key_version} service "
                          f"needs tunnel forwarding")
        if _not_unicast(dest.key.addr) or dest.forward in (Forward.DR, Forward.TUN):
            return "addr", (f"destination {dest.key.addr} is not a unicast address with a route "
                            f"(DR/TUN destinations need one)")
        return "dest", f"the kernel refused destination {_dest_text(dest.key)}"
    if service is not None:
        if service.key.af == socket.AF_INET6 and not 1 <= service.netmask <= 128:
            return "netmask", f"IPv6 netmask /{service.netmask} is not 1..128"
        if service.key.protocol is None and not service.key.fwmark:
            return "protocol", "a service needs a protocol or a fwmark"
        return "service", f"the kernel refused service {_key_text(service.key)}"
    return "service" if key is not None else "request", f"{op}: invalid argument"


def _not_unicast(addr: IPv4Address | IPv6Address) -> bool:
    return addr.is_multicast or addr.is_unspecified or (
        isinstance(addr, IPv4Address) and addr == IPv4Address("255.255.255.255"))
