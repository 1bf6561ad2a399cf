"""ops group (`python -m bench.run --only ops`): the cost of a Prometheus scrape.

`metrics_scrape_ms`: median wall time of GET /api/v1/metrics (bearer token with metrics:read,
through the admin app in-process over ASGI: token check, the store's figures, disks, backups,
the certificate, the serving process's snapshot) on the synthetic store of 1 M calls
(bench/synth.py), 30 scrapes after 3 warm-ups. `metrics_scrape_p95_ms` alongside.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from bench import synth

console = Console()
QUICK_CALLS = 20_000
SCRAPES = 30
OPS_MIGRATION = 14  # appliance/store/migrations/0014_ops.sql


def _store(calls: int) -> Path:
    """A generated store of `calls` calls: the cached one for the current schema, else a
    cached one older than the ops migration (opening it migrates it: 0014 adds its tables and
    counts the calls already there), else a new one (bench/synth.py caches it)."""
    spec = synth.Spec(calls=calls)
    current = synth.CACHE_ROOT / spec.key(synth.schema_key())
    if (current / "manifest.json").exists():
        return current
    older = []
    for p in synth.CACHE_ROOT.glob(f"synth-v*-n{calls}-*"):
        if (p / "manifest.json").exists() and ".part-" not in p.name:
            uri = f"file:{p / 'callvault.db'}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
                version = int(con.execute("PRAGMA user_version").fetchone()[0])
            if version < OPS_MIGRATION:
                older.append(p)
    if older:
        return max(older, key=lambda p: p.stat().st_mtime)
    return synth.cached(spec)


async def _measure(work: Path) -> dict[str, float]:
    from litestar.testing import AsyncTestClient

    from appliance.admin.app import create_app
    from appliance.admin.services import open_services
    from appliance.ops import metrics
    from appliance.privacy import Actor

    cfg = synth.synth_config(work)
    async with open_services(cfg) as svc:
        token = await svc.tokens.create("bench-prometheus", ["metrics:read"], Actor("bench", "ops"))
        calls = sum(n for _, _, n in await svc.db.ops_calls_by_line())

    class Idle:  # a serving process with nothing up: the snapshot's size is what matters
        def calls_in_progress(self) -> int:
            return 0

        def ami_connected(self) -> bool:
            return True

        def spool(self) -> tuple[int, int]:
            return 0, 0

        def models(self) -> dict[str, str]:
            return {"stt": "cpu", "llm": "cpu", "tts": "cpu"}

        def queues(self) -> dict[str, int]:
            return {"ingest": 0}

    metrics.LiveMetrics(Idle()).write_snapshot(metrics.snapshot_path(cfg))
    samples: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with AsyncTestClient(app=create_app(cfg), base_url="https://bench.local") as c:
        for i in range(SCRAPES + 3):
            metrics.snapshot_path(cfg).touch()
            t0 = time.perf_counter()
            r = await c.get("/api/v1/metrics", headers=headers)
            ms = (time.perf_counter() - t0) * 1000
            assert r.status_code == 200, r.text
            if i >= 3:
                samples.append(ms)
        families = list(text_string_to_metric_families(r.text))
    samples.sort()
    return {
        "metrics_scrape_ms": round(statistics.median(samples), 1),
        "metrics_scrape_p95_ms": round(samples[int(len(samples) * 0.95) - 1], 1),
        "metrics_bench_calls": calls,
        "metrics_families": len(families),
    }


def run(results: dict[str, float], quick: bool = False) -> dict[str, float]:
    calls = QUICK_CALLS if quick else synth.Spec().calls
    src = _store(calls)
    console.print(f"[bold]Store: {src.name}")
    work = Path(tempfile.mkdtemp(prefix="ops-", dir=src.parent))
    try:
        synth.working_copy(src, work)
        new = asyncio.run(_measure(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.update(new)
    return new


def notes() -> str:
    return (
        "`metrics_scrape_ms` (bench/ops.py): median of 30 GET /api/v1/metrics with a "
        "metrics:read token through the admin app over ASGI (no TLS) on the synthetic store "
        "(`metrics_bench_calls` calls): the calls-by-line-and-disposition count, open rights "
        "requests, retention, post-call queue, alerts, disks, backups, certificate and the "
        "serving process's snapshot; `metrics_scrape_p95_ms` alongside."
    )
