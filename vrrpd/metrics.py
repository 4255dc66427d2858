"""Prometheus metrics, read from the status document at scrape time.

Nothing is counted twice and the hot path pays nothing: :class:`StatusCollector` is a custom
collector on a private ``CollectorRegistry`` (never the global one) that turns one status
document into metric families when scraped.

Serving: prometheus-client's ``start_http_server`` (a ``ThreadingWSGIServer`` in a daemon
thread), started only when an address is configured.  Why a thread and not an asyncio
handler: HTTP parsing and the text exposition of thousands of series (10,000 real servers ->
~100,000 lines) stay off the event loop; only the document itself is built on the loop
(``loop.call_soon_threadsafe`` hop, waited for with a timeout), so the collector never reads
runner state while the loop mutates it.  The cost left on the loop is building the document
(a plain walk over the runners).

Metric names (all ``vrrpd_``; ``instance`` = vrrp_instance name, ``virtual_server`` =
keepalived's VS text, ``real_server`` = ``addr:port``): see :func:`metric_families`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vrrpd.status import RealServerStatus, StatusDocument

__all__ = ["MetricsServer", "StatusCollector", "make_registry", "metric_families",
           "parse_listen"]

STATES = ("INIT", "BACKUP", "MASTER", "FAULT", "STOP")


def _rs_name(rs: RealServerStatus) -> str:
    addr = rs["address"]
    return f"[{addr}]:{rs['port']}" if ":" in addr else f"{addr}:{rs['port']}"


def metric_families(doc: StatusDocument) -> list[Metric]:
    """The whole exposition for one document (pure)."""
    g, c = GaugeMetricFamily, CounterMetricFamily
    info = g("vrrpd_vrrp_instance_info", "VRRP instance identity (always 1)",
             labels=["instance", "interface", "vrid", "source"])
    state = g("vrrpd_vrrp_state", "1 for the instance's current VRRP state, else 0",
              labels=["instance", "state"])
    base = g("vrrpd_vrrp_base_priority", "Configured priority", labels=["instance"])
    eff = g("vrrpd_vrrp_effective_priority", "Priority advertised (trackers applied)",
            labels=["instance"])
    fault = g("vrrpd_vrrp_tracker_fault", "1 while a weight-0 tracker is down",
              labels=["instance"])
    late = g("vrrpd_vrrp_timer_late_max_seconds", "Worst lateness of the instance's timer",
             labels=["instance"])
    trans = c("vrrpd_vrrp_transitions", "VRRP state transitions", labels=["instance"])
    became = c("vrrpd_vrrp_became_master", "Transitions to MASTER", labels=["instance"])
    released = c("vrrpd_vrrp_released_master", "Transitions out of MASTER",
                 labels=["instance"])
    sent = c("vrrpd_vrrp_adverts_sent", "Adverts sent", labels=["instance"])
    recv = c("vrrpd_vrrp_adverts_received", "Valid adverts received", labels=["instance"])
    drops = c("vrrpd_vrrp_adverts_dropped", "Received packets dropped, by reason",
              labels=["instance", "reason"])
    p0s = c("vrrpd_vrrp_priority_zero_sent", "Priority-0 adverts sent", labels=["instance"])
    p0r = c("vrrpd_vrrp_priority_zero_received", "Priority-0 adverts received",
            labels=["instance"])
    garps = c("vrrpd_vrrp_garps_sent", "Gratuitous ARPs sent", labels=["instance"])
    vrrp: list[Metric] = [info, state, base, eff, fault, late, trans, became, released, sent,
                          recv, drops, p0s, p0r, garps]
    for i in doc["instances"]:
        lab = [i["name"]]
        cnt = i["counters"]
        info.add_metric([i["name"], i["interface"], str(i["vrid"]), i["source"]], 1)
        for s in STATES:
            state.add_metric([i["name"], s], 1 if i["state"] == s else 0)
        base.add_metric(lab, i["base_priority"])
        eff.add_metric(lab, i["effective_priority"])
        fault.add_metric(lab, int(i["fault"]))
        late.add_metric(lab, i["timer_late_max"])
        trans.add_metric(lab, cnt["transitions"])
        became.add_metric(lab, cnt["became_master"])
        released.add_metric(lab, cnt["released_master"])
        sent.add_metric(lab, cnt["adverts_sent"])
        recv.add_metric(lab, cnt["adverts_received"])
        for reason, v in sorted(cnt["drops"].items()):
            drops.add_metric([i["name"], reason], v)
        p0s.add_metric(lab, cnt["priority_zero_sent"])
        p0r.add_metric(lab, cnt["priority_zero_received"])
        if cnt["garps_sent"] is not None:
            garps.add_metric(lab, cnt["garps_sent"])

    vs_l, rs_l = ["virtual_server"], ["virtual_server", "real_server"]
    ck_l = [*rs_l, "kind", "target"]
    quorum = g("vrrpd_virtual_server_quorum_up", "1 while the virtual server has quorum",
               labels=vs_l)
    alive_w = g("vrrpd_virtual_server_alive_weight", "Sum of the alive real servers' weights",
                labels=vs_l)
    sorry = g("vrrpd_virtual_server_sorry_active", "1 while the sorry server is in use",
              labels=vs_l)
    rs_alive = g("vrrpd_real_server_alive", "1 while every checker of the real server is up",
                 labels=rs_l)
    rs_weight = g("vrrpd_real_server_weight", "Weight from config and dynamic checkers",
                  labels=rs_l)
    rs_ipvs = g("vrrpd_real_server_ipvs_weight",
                "Desired IPVS weight (0 = inhibited); absent while not in IPVS", labels=rs_l)
    rs_in = g("vrrpd_real_server_in_ipvs", "1 while the real server is wanted in IPVS",
              labels=rs_l)
    ck_up = g("vrrpd_checker_up", "1 while the checker is up", labels=ck_l)
    ck_ok = g("vrrpd_checker_last_success", "1 if the checker's last probe succeeded",
              labels=ck_l)
    ck_lat = g("vrrpd_checker_latency_seconds", "Duration of the checker's last probe",
               labels=ck_l)
    ck_runs = c("vrrpd_checker_runs", "Probes completed", labels=ck_l)
    ipvs_active = g("vrrpd_ipvs_active_connections", "Active connections (last IPVS dump)",
                    labels=rs_l)
    ipvs_inact = g("vrrpd_ipvs_inactive_connections", "Inactive connections (last IPVS dump)",
                   labels=rs_l)
    ipvs_conns = c("vrrpd_ipvs_connections", "Connections scheduled (kernel counter)",
                   labels=rs_l)
    ipvs_pkts = c("vrrpd_ipvs_packets", "Packets (kernel counter)",
                  labels=[*rs_l, "direction"])
    ipvs_bytes = c("vrrpd_ipvs_bytes", "Bytes (kernel counter)", labels=[*rs_l, "direction"])
    lvs: list[Metric] = [quorum, alive_w, sorry, rs_alive, rs_weight, rs_ipvs, rs_in, ck_up,
                         ck_ok, ck_lat, ck_runs, ipvs_active, ipvs_inact, ipvs_conns,
                         ipvs_pkts, ipvs_bytes]
    for vs in doc["virtual_servers"]:
        vk = [vs["key"]]
        if vs["quorum_up"] is not None:
            quorum.add_metric(vk, int(vs["quorum_up"]))
        if vs["alive_weight"] is not None:
            alive_w.add_metric(vk, vs["alive_weight"])
        sorry.add_metric(vk, int(vs["sorry_active"]))
        for rs in vs["real_servers"]:
            r = [vs["key"], _rs_name(rs)]
            if rs["alive"] is not None:
                rs_alive.add_metric(r, int(rs["alive"]))
            rs_weight.add_metric(r, rs["weight"])
            rs_in.add_metric(r, int(rs["ipvs_weight"] is not None))
            if rs["ipvs_weight"] is not None:
                rs_ipvs.add_metric(r, rs["ipvs_weight"])
            for ck in rs["checkers"]:
                k = [*r, ck["kind"], ck["target"]]
                ck_up.add_metric(k, int(ck["up"]))
                ck_runs.add_metric(k, ck["runs"])
                if ck["last_ok"] is not None:
                    ck_ok.add_metric(k, int(ck["last_ok"]))
                if ck["latency"] is not None:
                    ck_lat.add_metric(k, ck["latency"])
            st = rs["stats"]
            if st is not None:
                ipvs_active.add_metric(r, st["active_conns"])
                ipvs_inact.add_metric(r, st["inactive_conns"])
                ipvs_conns.add_metric(r, st["conns"])
                ipvs_pkts.add_metric([*r, "in"], st["inpkts"])
                ipvs_pkts.add_metric([*r, "out"], st["outpkts"])
                ipvs_bytes.add_metric([*r, "in"], st["inbytes"])
                ipvs_bytes.add_metric([*r, "out"], st["outbytes"])

    reloads = c("vrrpd_reloads", "Configuration reloads, by result", labels=["result"])
    reloads.add_metric(["ok"], doc["reloads"]["succeeded"])
    reloads.add_metric(["failed"], doc["reloads"]["failed"])
    last_ok = g("vrrpd_reload_last_success",
                "1 if the last reload was applied, 0 if rejected (absent: none yet)")
    if doc["reloads"]["last_result"] is not None:
        last_ok.add_metric([], int(doc["reloads"]["last_result"] == "ok"))
    up = g("vrrpd_status_generated_timestamp_seconds", "When this status was built")
    up.add_metric([], doc["generated_at"])
    other: list[Metric] = [reloads, last_ok, up]
    mail = doc.get("mail")
    if mail:
        sent = c("vrrpd_mail", "smtp_alert mails, by outcome (failed: refused, timed out, SMTP "
                               "error; dropped: queue full or unsent at stop)", labels=["outcome"])
        for outcome in ("sent", "failed", "dropped"):
            sent.add_metric([outcome], mail[outcome])
        other.append(sent)
    if doc["lvs"] is not None:
        lv = doc["lvs"]
        for name, key, text in (("vrrpd_ipvs_syncs", "syncs", "Reconciles with the kernel"),
                                ("vrrpd_ipvs_dumps", "dumps", "IPVS table dumps"),
                                ("vrrpd_ipvs_ops", "ops", "IPVS write requests attempted"),
                                ("vrrpd_ipvs_failures", "failures", "Failed IPVS requests")):
            fam = c(name, text)
            fam.add_metric([], lv[key])  # type: ignore[literal-required]
            other.append(fam)
    return [*vrrp, *lvs, *other]


class StatusCollector(Collector):
    """Builds the document on ``loop`` (when given and running in another thread) at scrape
    time and converts it; ``timeout`` bounds the wait for a busy loop."""

    def __init__(self, document: Callable[[], StatusDocument], *,
                 loop: asyncio.AbstractEventLoop | None = None, timeout: float = 5.0) -> None:
        self._document = document
        self._loop = loop
        self._timeout = timeout

    def _fetch(self) -> StatusDocument:
        loop = self._loop
        if loop is None or not loop.is_running() or _in_loop_thread(loop):
            return self._document()

        async def build() -> StatusDocument:
            return self._document()

        return asyncio.run_coroutine_threadsafe(build(), loop).result(self._timeout)

    def collect(self) -> Iterable[Metric]:
        return metric_families(self._fetch())

    def describe(self) -> Iterable[Metric]:
        return []  # no collect at registration time


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def make_registry(document: Callable[[], StatusDocument], *,
                  loop: asyncio.AbstractEventLoop | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(document, loop=loop))
    return registry


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` / ``PORT`` (all addresses) -> (host, port)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "0.0.0.0"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"bad metrics address {text!r}: expected HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"bad metrics port {number}")
    return host, number


class MetricsServer:
    """``/metrics`` over HTTP in a daemon thread; off unless constructed and started."""

    def __init__(self, document: Callable[[], StatusDocument], listen: str, *,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.host, self.port = parse_listen(listen)
        self.registry = make_registry(document, loop=loop)
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind and serve; returns the bound (host, port) (port 0 picks a free one)."""
        self._httpd, self._thread = start_http_server(self.port, addr=self.host,
                                                      registry=self.registry)
        host, port = self._httpd.server_address[:2]
        self.port = port
        return host, port

    def stop(self, timeout: float = 5.0) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def iter_lines(families: Iterable[Metric]) -> Iterator[str]:
    """Debug helper: ``name{labels} value`` lines of metric families."""
    for fam in families:
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            yield f"{s.name}{{{labels}}} {s.value}" if labels else f"{s.name} {s.value}"
