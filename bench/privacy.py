"""Privacy benchmarks on a synthetic store of N calls (bench/synth.py: 1 M; `--quick`: 20 k).

Every figure goes through the appliance's own code paths, on a copy of the generated store:

  dsar_lookup_ms_1m          median ms to find everything about one subject: parse the number
                             (E.164), `Subjects.items` (blind index → links, one indexed query),
                             then the calls, CDRs, recordings and consent rows themselves
                             (`rows_where_in`, as the access export reads them); random subjects
  erasure_ms_1m              median ms of `Rights.process` on a verified erasure request (resolve,
                             plan, one-transaction erase with secure_delete and WAL checkpoint,
                             file removal, response), each a different subject with tens of calls
  export_mb_per_s            ZIP MB / s of `Rights.process` on an access request of a subject
                             whose calls carry 1-3 minute recordings (decrypted into the ZIP)
  encrypt_mb_per_s           `FileVault.encrypt` of a 50 MB WAV from tmpfs (the spool) into the
                             recordings directory (fsynced), MB of plaintext / s
  disk_write_mb_per_s        the same bytes written plainly and fsynced into the same directory,
                             in the same run (encrypt / disk write is the cost of encryption)
  retention_purge_rows_per_s rows deleted or anonymised / s by `Retention.run` (H3's
                             appliance.privacy.retention) with the clock moved so that ~10 % of
                             the calls are past the CDR policy
  privacy_bench_calls        N, the calls in the store the figures were taken on

MB = 10^6 bytes. Medians of repeats; the machine is shared, so compare ratios taken in one run.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from rich.console import Console
from rich.progress import Progress

from appliance.config import Config
from appliance.privacy import Actor, Privacy
from appliance.privacy.rights import Rights
from appliance.store import Database
from appliance.telephony.recordings import RecordingStore
from bench import synth

OP = Actor("bench", "privacy-officer")
QUICK_CALLS = 20_000
ENCRYPT_BYTES = 50 * 1000 * 1000
console = Console()
T = TypeVar("T")


@dataclass(frozen=True)
class Picked:
    subject_id: int
    number: str
    calls: int
    recordings: int


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def _timed(fn: Callable[..., Awaitable[T]], *args: Any) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = await fn(*args)
    return time.perf_counter() - t0, out


class Bench:
    def __init__(self, cfg: Config, db: Database, work: Path, summary: synth.Summary) -> None:
        self.cfg = cfg
        self.db = db
        self.work = work
        self.summary = summary
        self.privacy = Privacy(cfg, db)
        self.rights = Rights(self.privacy, exports_dir=work / "exports")
        self.rng = random.Random(summary.spec.seed)
        self.activity: list[tuple[int, bytes, int, int]] = []

    async def pick(self, count: int, lo: int, hi: int, *, with_recordings: bool) -> list[Picked]:
        """Random phone subjects with lo..hi calls, their numbers opened with their own keys."""
        if not self.activity:
            self.activity = await self.db.subject_activity("phone")
        pool = [a for a in self.activity if lo <= a[2] <= hi]
        if with_recordings:
            pool = [a for a in pool if a[3] > 0] or pool
        if len(pool) < count:
            raise RuntimeError(f"only {len(pool)} subjects with {lo}-{hi} calls, need {count}")
        chosen = self.rng.sample(pool, count)
        self.activity = [a for a in self.activity if a not in chosen]  # each used once
        keyring = self.privacy.keyring
        return [
            Picked(sid, await keyring.subject_value(sid, enc), calls, recs)
            for sid, enc, calls, recs in chosen
        ]

    # ---- find everything about one subject
    async def lookup(self, number: str) -> dict[str, int]:
        subjects = self.privacy.subjects
        items = await subjects.items(subjects.parse(number))
        calls = sorted({i["item_id"] for i in items if i["item_type"] == "call"})
        recs = {i["item_id"] for i in items if i["item_type"] == "recording"}
        db = self.db
        return {
            "calls": len(await db.rows_where_in("calls", "id", calls)),
            "cdrs": len(await db.rows_where_in("cdrs", "call_id", calls)),
            "recordings": len(
                {r["id"] for r in await db.rows_where_in("recordings", "call_id", calls)}
                | {int(r) for r in recs}
            ),
            "consents": len(await db.rows_where_in("consents", "call_id", calls)),
        }

    async def lookups(self, count: int) -> dict[str, float]:
        subjects = await self.pick(count + 1, 1, 10**9, with_recordings=False)
        await self.lookup(subjects[0].number)  # warm-up: the keys and the statement cache
        times, sizes = [], []
        for s in subjects[1:]:
            seconds, found = await _timed(self.lookup, s.number)
            if found["calls"] != s.calls:
                raise RuntimeError(f"lookup of subject {s.subject_id} found {found}, not {s.calls}")
            times.append(seconds)
            sizes.append(s.calls)
        busiest = max(self.activity, key=lambda a: a[2])
        number = await self.privacy.keyring.subject_value(busiest[0], busiest[1])
        heavy, _ = await _timed(self.lookup, number)
        console.print(
            f"  {count} lookups: median {_ms(statistics.median(times))} ms, "
            f"max {_ms(max(times))} ms (calls per subject: median {statistics.median(sizes)}, "
            f"max {max(sizes)}); busiest caller ({busiest[2]} calls): {_ms(heavy)} ms"
        )
        return {"dsar_lookup_ms_1m": _ms(statistics.median(times))}

    # ---- erasure
    async def erasures(self, count: int) -> dict[str, float]:
        times = []
        for s in await self.pick(count, 20, 99, with_recordings=True):
            req = await self.rights.create("erasure", s.number, OP)
            await self.rights.attest(req.id, OP, "benchmark: identity attested")
            seconds, done = await _timed(self.rights.process, req.id, OP)
            if done.response.get("outcome") != "erased":
                raise RuntimeError(f"erasure of subject {s.subject_id}: {done.response}")
            if await self.privacy.subjects.items(self.privacy.subjects.parse(s.number)):
                raise RuntimeError(f"subject {s.subject_id} still has items after erasure")
            console.print(
                f"  erased subject {s.subject_id}: {s.calls} calls, "
                f"{done.response['deleted']['recordings']} recordings in {_ms(seconds)} ms"
            )
            times.append(seconds)
        return {"erasure_ms_1m": _ms(statistics.median(times))}

    # ---- access export
    async def exports(self, count: int) -> dict[str, float]:
        rates = []
        spool = Path(tempfile.mkdtemp(prefix="callvault-bench-spool-", dir=_tmpfs()))
        store = RecordingStore(spool, self.cfg.recordings_dir, self.db, self.privacy)
        try:
            for s in await self.pick(count, 8, 40, with_recordings=False):
                await self._record_calls(store, spool, s)
                req = await self.rights.create("access", s.number, OP)
                await self.rights.attest(req.id, OP, "benchmark: identity attested")
                seconds, done = await _timed(self.rights.process, req.id, OP)
                size = (await asyncio.to_thread(Path(done.export_path).stat)).st_size
                rates.append(size / 1e6 / seconds)
                console.print(
                    f"  export of subject {s.subject_id}: {done.response['recordings']} "
                    f"recordings, {size / 1e6:.1f} MB in {_ms(seconds)} ms"
                )
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        return {"export_mb_per_s": round(statistics.median(rates), 1)}

    async def _record_calls(self, store: RecordingStore, spool: Path, s: Picked) -> None:
        """Give up to 8 of the subject's calls a 1-3 minute recording, ingested as live."""
        subjects = self.privacy.subjects
        items = await subjects.items(subjects.parse(s.number))
        calls = sorted({i["item_id"] for i in items if i["item_type"] == "call"})
        has_audio = {
            r["call_id"] for r in await self.db.rows_where_in("recordings", "call_id", calls)
        }
        rows = await self.db.rows_where_in("calls", "id", calls)
        todo = [r for r in rows if r["answered_at"] and r["line"] and r["id"] not in has_audio]
        for row in todo[:8]:
            path = spool / f"cv-{row['id']}-{row['line']}-mixed.wav"
            await asyncio.to_thread(_write_wav, path, self.rng.uniform(60, 180))
            await store.ingest_call(str(row["id"]))

    # ---- recording encryption against the disk
    async def encrypt(self, repeats: int) -> dict[str, float]:
        spool = Path(tempfile.mkdtemp(prefix="callvault-bench-spool-", dir=_tmpfs()))
        src = spool / "cv-1.1-bench-mixed.wav"
        await asyncio.to_thread(_write_wav, src, (ENCRYPT_BYTES - 44) / 16000)
        size = src.stat().st_size
        out_dir = self.cfg.recordings_dir / "bench"
        sid = (await self.pick(1, 1, 10**9, with_recordings=False))[0].subject_id
        enc, plain = [], []
        try:
            for i in range(repeats):
                dest = out_dir / f"enc-{i}.wav.cvae"
                seconds, _ = await _timed(self.privacy.files.encrypt, src, dest, [sid], "bench")
                enc.append(size / 1e6 / seconds)
                dest.unlink()
                t0 = time.perf_counter()
                await asyncio.to_thread(_plain_write, src, out_dir / f"plain-{i}.wav")
                plain.append(size / 1e6 / (time.perf_counter() - t0))
                (out_dir / f"plain-{i}.wav").unlink()
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        e, p = statistics.median(enc), statistics.median(plain)
        console.print(
            f"  {size / 1e6:.0f} MB x {repeats}: encrypt {e:.0f} MB/s (runs {_fmt(enc)}), "
            f"plain write+fsync {p:.0f} MB/s (runs {_fmt(plain)}), ratio {e / p:.2f}"
        )
        return {"encrypt_mb_per_s": round(e, 1), "disk_write_mb_per_s": round(p, 1)}

    # ---- retention purge
    async def retention(self) -> dict[str, float]:
        from appliance.privacy.retention import Retention

        spec = self.summary.spec
        # The calls span exactly the CDR policy (3 years): moving the clock on by 10 % of the
        # span puts the oldest ~10 % of the calls (and every recording, 90 days) past policy.
        now = self.summary.end_at + 0.1 * spec.span_days * synth.DAY
        retention = Retention.of(self.privacy, clock=lambda: now)
        dry_s, plan = await _timed(retention.dry_run, now)
        planned = {c: n.deleted + n.anonymised for c, n in plan.counts().items()}
        seconds, result = await _timed(retention.run, now)
        done = {c: n.deleted + n.anonymised for c, n in result.counts.items()}
        if done != planned:
            raise RuntimeError(f"retention: the dry run planned {planned}, the run did {done}")
        console.print(
            f"  purge at end + {0.1 * spec.span_days:.0f} days of {spec.calls:,} calls: "
            f"{result.total:,} rows in {seconds:.2f} s ({done}); dry run {dry_s:.2f} s"
        )
        return {"retention_purge_rows_per_s": round(result.total / seconds)}


def notes(calls: int) -> str:
    """The paragraph bench/results/latest.md gives the privacy keys."""
    return (
        f"Privacy keys (`privacy_bench_calls` = {calls:,} calls; the `_1m` keys are named for the "
        "full 1 M store, `--quick` measures 20 k): a synthetic store from bench/synth.py (3 "
        "years of calls, ~N/20 E.164 callers in 8 countries, subjects made by the real key "
        "ring, 5 % of recent answered calls with small encrypted recordings), benchmarked on a "
        "copy. `dsar_lookup_ms_1m`: median of 30 random subjects, number parsed → "
        "`Subjects.items` → the calls/CDRs/recordings/consents rows. `erasure_ms_1m`: median of "
        "7 `Rights.process` runs on verified erasure requests of subjects with 20-99 calls. "
        "`export_mb_per_s`: median ZIP MB/s of 3 access requests whose subjects have up to 8 "
        "recordings of 1-3 min. `encrypt_mb_per_s` vs `disk_write_mb_per_s`: `FileVault.encrypt` "
        "of a 50 MB WAV from tmpfs vs a plain write+fsync of it into the same directory, 5 "
        "interleaved runs each. `retention_purge_rows_per_s`: rows deleted or anonymised per "
        "second by `Retention.run` (its own planning included) with the clock moved 10 % of the "
        "span past the newest call: ~10 % of the calls and every recording expired. MB = 10^6 "
        "bytes."
    )


def _fmt(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values)


def _tmpfs() -> str | None:
    # The spool is a tmpfs on the appliance: plaintext audio is read from memory, not disk.
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def _write_wav(path: Path, seconds: float) -> None:
    frames = int(seconds * 8000)
    rng = np.random.default_rng(frames)
    t = np.arange(frames) / 8000
    pcm = 4000 * np.sin(2 * np.pi * 220 * t) + rng.normal(0, 800, frames)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.clip(pcm, -32768, 32767).astype("<i2").tobytes())


def _plain_write(src: Path, dest: Path) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
        while chunk := fin.read(64 * 1024):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())


async def _bench(cfg: Config, work: Path, summary: synth.Summary, quick: bool) -> dict[str, float]:
    out: dict[str, float] = {"privacy_bench_calls": summary.spec.calls}
    async with Database(cfg.database) as db:
        b = Bench(cfg, db, work, summary)
        console.print("[bold]DSAR lookups (everything about one number)")
        out.update(await b.lookups(20 if quick else 30))
        console.print("[bold]Recording encryption vs plain disk writes")
        out.update(await b.encrypt(3 if quick else 5))
        console.print("[bold]Access exports (ZIP with decrypted audio)")
        out.update(await b.exports(2 if quick else 3))
        console.print("[bold]Erasures (rights erasure path)")
        out.update(await b.erasures(5 if quick else 7))
        console.print("[bold]Retention purge")
        out.update(await b.retention())
    return out


def run(results: dict[str, float], quick: bool = False) -> dict[str, float]:
    """Measure the privacy keys into `results` (and return them)."""
    spec = synth.Spec(calls=QUICK_CALLS if quick else synth.Spec().calls)
    console.print(f"[bold]Synthetic store: {spec.calls:,} calls (bench/synth.py, cached)")
    with Progress(console=console) as progress:
        src = synth.cached(spec, progress)
    summary = synth.Summary.load(src / "manifest.json")
    console.print(f"  {src}: {summary.counts}")
    # Beside the cache: same file system, so the recordings can be hard-linked.
    work = Path(tempfile.mkdtemp(prefix="run-", dir=src.parent))
    try:
        t0 = time.monotonic()
        cfg = synth.working_copy(src, work)
        console.print(f"  working copy in {time.monotonic() - t0:.1f} s")
        new = asyncio.run(_bench(cfg, work, summary, quick))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.update(new)
    return new
