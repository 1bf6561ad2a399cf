"""Prometheus metrics (prometheus-client) for the admin listener's /api/v1/metrics.

Two sources, because the box runs as two processes (callvault.service and
callvault-admin.service):
- the serving process (`callvault serve`) knows the live state — calls in progress, the AMI
  connection, turn latencies, the spool — and writes its registry in the text format to
  `<state_dir>/run/metrics-serve.prom` every few seconds (`LiveMetrics.run`), like
  node_exporter's textfile collector;
- the admin listener gathers what the database and the disks say at scrape time
  (`scrape()`), and appends the serving process's file while it is fresh.

Labels carry line names, dispositions, stages, severities and disk roles — never a phone
number, a name or any other personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.config import Config

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SNAPSHOT_NAME = "metrics-serve.prom"
SNAPSHOT_MAX_AGE_S = 30.0
LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


def snapshot_path(cfg: Config) -> Path:
    return cfg.state_dir / "run" / SNAPSHOT_NAME


def disk_places(cfg: Config) -> list[tuple[str, Path]]:
    """The disks the box writes to, by role (a label, not a personal datum)."""
    return [
        ("state", cfg.state_dir),
        ("recordings", cfg.recordings_dir),
        ("backups", cfg.backup.dir),
        ("spool", cfg.asterisk.host_path(cfg.asterisk.spool_dir)),
    ]


@dataclass(frozen=True)
class DiskFree:
    role: str
    path: str
    free_bytes: int
    total_bytes: int

    @property
    def free_pct(self) -> float:
        return 100.0 * self.free_bytes / self.total_bytes if self.total_bytes else 0.0


def disk_free(places: Iterable[tuple[str, Path]]) -> list[DiskFree]:
    out = []
    for role, path in places:
        probe = path
        # A directory not made yet still lives on some disk: its nearest existing parent's.
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            usage = shutil.disk_usage(probe)
        except OSError:
            continue
        out.append(DiskFree(role, str(path), usage.free, usage.total))
    return out


# ---- the serving process's live metrics
class LiveSource(Protocol):
    """What LiveMetrics reads from the running appliance at collect time."""

    def calls_in_progress(self) -> int: ...
    def ami_connected(self) -> bool: ...
    def spool(self) -> tuple[int, int]:
        """(files, bytes) of plaintext recordings waiting to be encrypted."""
        ...

    def models(self) -> Mapping[str, str]:
        """Loaded model roles -> device (cpu/cuda); empty when the voice agent is not loaded."""
        ...

    def queues(self) -> Mapping[str, int]:
        """In-memory work queues of the serving process by name (e.g. ingest)."""
        ...


@dataclass
class TurnTimes:
    """One answered AI turn's figures, in seconds (appliance.voice.agent.TurnTiming)."""

    answer_s: float
    stt_s: float
    llm_s: float
    tts_s: float


class LiveMetrics:
    def __init__(self, source: LiveSource, *, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        self.turn_latency = Histogram(
            "callvault_ai_turn_latency_seconds",
            "End of the caller's speech to the agent's first audio",
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.stage = Histogram(
            "callvault_ai_stage_seconds",
            "Time per voice stage of a turn: stt (whisper), llm (first piece), tts (first audio)",
            ["stage"],
            registry=self.registry,
            buckets=STAGE_BUCKETS,
        )
        self.trunk = Gauge(
            "callvault_trunk_registered",
            "1 when the trunk (outbound registration or IP peer) is up, else 0",
            ["trunk"],
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(self))

    def observe_turn(self, t: TurnTimes) -> None:
        self.turn_latency.observe(t.answer_s)
        self.stage.labels("stt").observe(t.stt_s)
        self.stage.labels("llm").observe(t.llm_s)
        self.stage.labels("tts").observe(t.tts_s)

    def observe_conversation(self, convo: Any) -> None:
        """Every turn of a finished voice-agent call (its `timings`, in ms)."""
        for t in getattr(convo, "timings", ()):
            self.observe_turn(
                TurnTimes(
                    answer_s=t.answer_ms / 1000,
                    stt_s=t.stt_ms / 1000,
                    llm_s=t.llm_first_ms / 1000,
                    tts_s=t.tts_first_ms / 1000,
                )
            )

    def set_trunks(self, states: Mapping[str, bool]) -> None:
        for name in list(self.trunk._metrics):  # trunks that went away drop their series
            if name[0] not in states:
                self.trunk.remove(*name)
        for name, up in states.items():
            self.trunk.labels(name).set(1 if up else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def write_snapshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.render())
        tmp.replace(path)  # readers never see half a file

    async def run(self, path: Path, interval_s: float = 5.0) -> None:
        """Write the snapshot every `interval_s` until cancelled; removed on the way out."""
        try:
            while True:
                await asyncio.to_thread(self.write_snapshot, path)
                await asyncio.sleep(interval_s)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # noqa: ASYNC240 - one unlink on the way out


class _LiveCollector(Collector):
    def __init__(self, live: LiveMetrics) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        src = self.live.source
        yield GaugeMetricFamily(
            "callvault_calls_in_progress", "Calls with a channel up", value=src.calls_in_progress()
        )
        yield GaugeMetricFamily(
            "callvault_ami_connected",
            "1 while the AMI session to Asterisk is up",
            value=1 if src.ami_connected() else 0,
        )
        files, size = src.spool()
        yield GaugeMetricFamily(
            "callvault_recording_spool_bytes", "Plaintext recordings in the spool", value=size
        )
        yield GaugeMetricFamily(
            "callvault_encryption_backlog_files",
            "Recordings in the spool not yet encrypted (calls in progress included)",
            value=files,
        )
        models = src.models()
        yield GaugeMetricFamily(
            "callvault_models_loaded", "1 when the voice agent's models are loaded",
            value=1 if models else 0,
        )  # fmt: skip
        dev = GaugeMetricFamily(
            "callvault_model_device",
            "The device each loaded model runs on",
            labels=["role", "device"],
        )
        for role, device in sorted(models.items()):
            dev.add_metric([role, device], 1)
        yield dev
        q = GaugeMetricFamily("callvault_queue_depth", "Work waiting per queue", labels=["queue"])
        for name, n in sorted(src.queues().items()):
            q.add_metric([name], n)
        yield q
        yield GaugeMetricFamily(
            "callvault_serve_snapshot_timestamp_seconds",
            "When the serving process wrote these figures",
            value=self.live.clock(),
        )


# ---- what the admin listener gathers at scrape time
class FigureStore(Protocol):
    async def ops_calls_by_line(self) -> list[tuple[str, str, int]]: ...
    async def ops_cdrs_by_line(self) -> list[tuple[str, str, int]]: ...
    async def ops_open_rights(self, closed: tuple[str, ...]) -> list[tuple[int, str, float]]: ...
    async def ops_last_retention_run(self) -> dict[str, Any] | None: ...
    async def ops_post_call_jobs(self) -> dict[str, int]: ...
    async def alert_open_counts(self) -> dict[str, int]: ...


@dataclass
class Figures:
    at: float
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    cdrs: list[tuple[str, str, int]] = field(default_factory=list)
    rights: list[tuple[int, str, float]] = field(default_factory=list)
    retention: dict[str, Any] | None = None
    jobs: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    disks: list[DiskFree] = field(default_factory=list)
    backup_at: float | None = None
    backup_verified: bool | None = None
    cert_expires_at: float | None = None


async def gather(
    cfg: Config, db: FigureStore, *, clock: Callable[[], float] = time.time
) -> Figures:
    from appliance.privacy.rights.model import CLOSED

    calls, cdrs, rights, retention, jobs, alerts = await asyncio.gather(
        db.ops_calls_by_line(),
        db.ops_cdrs_by_line(),
        db.ops_open_rights(tuple(sorted(str(s) for s in CLOSED))),
        db.ops_last_retention_run(),
        db.ops_post_call_jobs(),
        db.alert_open_counts(),
    )
    disks, backup, cert = await asyncio.to_thread(_files, cfg)
    return Figures(
        at=clock(),
        calls=calls,
        cdrs=cdrs,
        rights=rights,
        retention=retention,
        jobs=jobs,
        alerts=alerts,
        disks=disks,
        backup_at=backup[0],
        backup_verified=backup[1],
        cert_expires_at=cert,
    )


def _files(cfg: Config) -> tuple[list[DiskFree], tuple[float | None, bool | None], float | None]:
    return disk_free(disk_places(cfg)), last_backup(cfg), cert_expiry(cfg)


def last_backup(cfg: Config) -> tuple[float | None, bool | None]:
    """(created_at, verified ok) of the newest archive; (None, None) when there is none."""
    from appliance.errors import CallvaultError
    from appliance.privacy.backup import list_archives

    try:
        archives = list_archives(cfg)
    except (OSError, CallvaultError, ValueError):
        return None, None
    if not archives:
        return None, None
    newest = max(archives, key=lambda a: a.created_at)
    ok = None if newest.verified is None else bool(newest.verified.get("ok"))
    return newest.created_at, ok


def cert_expiry(cfg: Config) -> float | None:
    from cryptography import x509

    cert_path, _ = cfg.admin.cert_paths(cfg.state_dir)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc.timestamp()


class _FiguresCollector(Collector):
    def __init__(self, f: Figures) -> None:
        self.f = f

    def collect(self) -> Iterator[Metric]:
        yield from self._calls()
        yield from self._privacy()
        yield from self._system()

    def _calls(self) -> Iterator[Metric]:
        f = self.f
        calls = GaugeMetricFamily(
            "callvault_calls_stored", "Calls in the store by line and disposition",
            labels=["line", "disposition"],
        )  # fmt: skip
        for line, disposition, n in f.calls:
            calls.add_metric([line, disposition], n)
        yield calls
        cdrs = CounterMetricFamily(
            "callvault_cdrs", "CDRs written since install by line and disposition (one per call,"
            " more for a transferred call); rate() of it is the call rate",
            labels=["line", "disposition"],
        )  # fmt: skip
        for line, disposition, n in f.cdrs:
            cdrs.add_metric([line, disposition], n)
        yield cdrs
        q = GaugeMetricFamily(
            "callvault_post_call_jobs", "Post-call jobs waiting by stage", labels=["stage"]
        )
        for stage in ("transcribe", "report"):
            q.add_metric([stage], f.jobs.get(stage, 0))
        yield q

    def _privacy(self) -> Iterator[Metric]:
        f = self.f
        by_kind: dict[str, int] = {}
        for _, kind, _ in f.rights:
            by_kind[kind] = by_kind.get(kind, 0) + 1
        rights = GaugeMetricFamily(
            "callvault_rights_requests_open", "Open data subject requests", labels=["kind"]
        )
        for kind, n in sorted(by_kind.items()):
            rights.add_metric([kind], n)
        yield rights
        if f.rights:
            yield GaugeMetricFamily(
                "callvault_rights_next_deadline_days",
                "Days until the soonest open request is due (negative: overdue)",
                value=round((f.rights[0][2] - f.at) / 86400, 3),
            )
        r = f.retention
        if r is not None:
            yield GaugeMetricFamily(
                "callvault_retention_last_run_timestamp_seconds",
                "When the last retention purge finished",
                value=float(r.get("finished_at") or r["started_at"]),
            )
            yield GaugeMetricFamily(
                "callvault_retention_last_run_ok",
                "1 when the last retention purge succeeded",
                value=1 if r["status"] == "ok" else 0,
            )
            import json

            counts = GaugeMetricFamily(
                "callvault_retention_last_run_items",
                "Items the last retention purge removed or anonymised, by category",
                labels=["category"],
            )
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                for cat, n in sorted(json.loads(r.get("counts") or "{}").items()):
                    if isinstance(n, int | float):
                        counts.add_metric([str(cat)], float(n))
            yield counts

    def _system(self) -> Iterator[Metric]:
        f = self.f
        al = GaugeMetricFamily("callvault_alerts_open", "Open alerts", labels=["severity"])
        for sev in ("critical", "warning", "info"):
            al.add_metric([sev], f.alerts.get(sev, 0))
        yield al
        free = GaugeMetricFamily(
            "callvault_disk_free_bytes", "Free bytes on each data disk", labels=["disk"]
        )
        ratio = GaugeMetricFamily(
            "callvault_disk_free_ratio", "Free share of each data disk", labels=["disk"]
        )
        for d in f.disks:
            free.add_metric([d.role], d.free_bytes)
            ratio.add_metric([d.role], round(d.free_pct / 100, 5))
        yield free
        yield ratio
        if f.backup_at is not None:
            yield GaugeMetricFamily(
                "callvault_backup_last_timestamp_seconds",
                "When the newest backup archive was made",
                value=f.backup_at,
            )
            yield GaugeMetricFamily(
                "callvault_backup_last_verified",
                "1 when the newest archive verified, 0 when it failed or was never verified",
                value=1 if f.backup_verified else 0,
            )
        if f.cert_expires_at is not None:
            yield GaugeMetricFamily(
                "callvault_tls_cert_expiry_timestamp_seconds",
                "When the admin listener's certificate expires",
                value=f.cert_expires_at,
            )


def render_figures(f: Figures) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FiguresCollector(f))
    return generate_latest(registry)


def serve_snapshot(path: Path, *, now: float, max_age_s: float = SNAPSHOT_MAX_AGE_S) -> bytes:
    """The serving process's last figures while fresh, and `callvault_serve_up` saying so."""
    try:
        st = path.stat()
        text = path.read_bytes() if now - st.st_mtime <= max_age_s else b""
    except OSError:
        text = b""
    up = (
        b"# HELP callvault_serve_up 1 when the serving process's live figures are fresh\n"
        b"# TYPE callvault_serve_up gauge\n"
        + (b"callvault_serve_up 1.0\n" if text else b"callvault_serve_up 0.0\n")
    )
    return up + text


async def scrape(cfg: Config, db: FigureStore, *, clock: Callable[[], float] = time.time) -> bytes:
    """The whole exposition the admin listener serves."""
    f = await gather(cfg, db, clock=clock)
    return render_figures(f) + serve_snapshot(snapshot_path(cfg), now=time.time())


def spool_usage(spool: Path, pattern: str = "cv-*.wav") -> tuple[int, int]:
    files = size = 0
    with contextlib.suppress(OSError):
        for p in spool.glob(pattern):
            with contextlib.suppress(OSError):
                size += p.stat().st_size
                files += 1
    return files, size


def models_by_role(engines: object) -> dict[str, str]:
    """Role -> device of a loaded VoiceEngines (stt, llm, tts); {} when none is loaded."""
    if engines is None:
        return {}
    default = str(getattr(engines, "device", "cpu"))
    out: dict[str, str] = {}
    for role in ("stt", "llm", "tts"):
        engine = getattr(engines, role, None)
        if engine is not None:
            gpu = getattr(engine, "gpu", None)
            out[role] = "cuda" if gpu is True else str(getattr(engine, "device", default))
    return out
