"""The appliance SIGKILLed while writing calls: the database stays consistent, every row it
acknowledged is there, and after the restart no plaintext audio is left in the spool (each
file is encrypted and stored, or was already) and no half-encrypted file lingers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.privacy import Actor
from appliance.store import Database
from appliance.telephony import service as service_mod
from appliance.telephony.recordings import RecordingStore
from appliance.telephony.service import TelephonyService
from tests.privacy.conftest import make_cfg

REPO = Path(__file__).resolve().parents[2]


def run_and_kill(base: Path, after_acks: int, *, stall: bool = False) -> list[str]:
    """Start the writer, SIGKILL it after `after_acks` acknowledgements (or, with `stall`,
    once it holds a call's plaintext in the spool); return the acks."""
    stall_at = after_acks // 2 + 1 if stall else -1
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.killed_writer", str(base), str(stall_at)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acks: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(acks) < after_acks:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer died: {proc.stderr.read() if proc.stderr else ''}")
            if line.startswith(("cdr ", "rec ")):
                acks.append(line.strip())
            if line.startswith("stalled"):
                break
            assert time.monotonic() < deadline, "writer too slow"
        # Land the kill at an arbitrary point of the next write, not on an ack boundary.
        time.sleep(random.uniform(0, 0.02))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # Anything printed before the kill was acknowledged too.
        rest = proc.stdout.read()
        acks += [ln.strip() for ln in rest.splitlines() if ln.startswith(("cdr ", "rec "))]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return acks


async def restart_sweep(base: Path) -> tuple[int, int]:
    """What TelephonyService.start does before AMI: drop `.part` files, take the spool."""
    cfg = make_cfg(base)
    async with Database(cfg.database) as db:
        svc = TelephonyService(cfg, db)
        svc.recordings = RecordingStore(base / "spool", cfg.recordings_dir, db, svc.privacy)
        removed = svc.recordings.remove_partials()
        leftovers = len(svc.recordings.spool_files())
        await svc._sweep_spool()
        await asyncio.gather(*list(svc._tasks))
        # Every stored recording decrypts to what its row says.
        for row in await db.recordings():
            digest = hashlib.sha256()
            async for chunk in svc.recordings.open_recording(
                row, actor=Actor("cli:test", "operator"), purpose="integrity check"
            ):
                digest.update(chunk)
            assert digest.hexdigest() == row["sha256"]
    return removed, leftovers


@pytest.mark.parametrize("round_", range(3))
def test_sigkill_while_writing_loses_no_acknowledged_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, round_: int
) -> None:
    monkeypatch.setattr(service_mod, "INGEST_CDR_WAIT_S", 0.5)
    acks = run_and_kill(tmp_path, after_acks=random.randint(6, 30), stall=round_ == 0)
    db_path = make_cfg(tmp_path).database
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        cdr_ids = {r[0] for r in con.execute("SELECT call_id FROM cdrs")}
        rec_ids = {r[0] for r in con.execute("SELECT call_id FROM recordings")}
    finally:
        con.close()
    acked_cdrs = {a.split()[1] for a in acks if a.startswith("cdr ")}
    acked_recs = {a.split()[1] for a in acks if a.startswith("rec ")}
    assert acked_cdrs and acked_cdrs <= cdr_ids, acked_cdrs - cdr_ids
    assert acked_recs <= rec_ids, acked_recs - rec_ids
    removed, leftovers = asyncio.run(restart_sweep(tmp_path))
    # The call being written when the process died (none if it died between two calls).
    assert leftovers == 1 if round_ == 0 else leftovers <= 1
    spool = tmp_path / "spool"
    assert sorted(p.name for p in spool.glob("cv-*.wav")) == []
    rec_dir = make_cfg(tmp_path).recordings_dir
    assert list(rec_dir.rglob("*.part")) == []
    con = sqlite3.connect(db_path)
    try:
        stored = {r[0] for r in con.execute("SELECT call_id FROM recordings")}
        files = {Path(r[0]).name for r in con.execute("SELECT path FROM recordings")}
    finally:
        con.close()
    # Every call that reached the spool is stored now, once; every file has its row.
    assert stored == cdr_ids | stored and stored >= acked_cdrs
    assert {p.name for p in rec_dir.rglob("*.cvae")} == files
    assert removed in (0, 1)
