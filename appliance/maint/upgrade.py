"""`callvault upgrade`: bring the database to this release's schema, or leave it as it was.

Run with the new release installed (the Ansible role runs it right after installing one):

1. plan: the database's schema against this release's migrations; a database *newer* than
   the release is refused (a downgrade would run old code on a schema it does not know).
2. a verified backup (`callvault backup create`): the archive is written, then restored into a
   scratch directory and opened by this release — which migrates that copy, so every pending
   migration is rehearsed on real data before the live database is touched.
3. `--restart` units are stopped (the appliance keeps its database open); without them the
   running appliance keeps serving while the migration runs.
4. every pending migration in **one** transaction (appliance.store.db): a failure rolls back
   to the previous schema, never one in between.
5. the units are started again and readiness is polled: the schema, `PRAGMA quick_check`, a
   write transaction, no table lost rows against the backup's manifest, then the probes of
   the running box (appliance.ops.health, what /readyz answers: Asterisk over AMI, a database
   write, the serving process's models, free disk).
6. not ready in time: the database is restored from the verified archive (page by page, in one
   transaction, so a process that has it open sees the old or the restored content, never a
   mix), and the command exits 1. The named units stay stopped: this release's code would
   migrate again at its start; reinstall the previous release, then start them (the Ansible
   role does both).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.maint.progress import Silent, Steps
from appliance.privacy import backup
from appliance.privacy import backup_archive as arc
from appliance.privacy.backup_archive import Check
from appliance.store import Database
from appliance.store import backup as store_backup
from appliance.store import maint as store_maint
from appliance.store.db import migrations as code_migrations


class UpgradeError(CallvaultError):
    pass


Migrations = Sequence[tuple[int, str]]
Probe = Callable[[Config], Awaitable[list[Check]]]


@dataclass(frozen=True)
class Plan:
    database: Path
    current: int
    newest: int
    pending: tuple[int, ...]

    @property
    def needed(self) -> bool:
        return bool(self.pending)


@dataclass
class Outcome:
    plan: Plan
    archive: Path | None = None
    applied: tuple[int, ...] = ()
    ready: list[Check] = field(default_factory=list)
    rolled_back: bool = False
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.rolled_back and not self.reason


def plan(cfg: Config, known: Migrations | None = None) -> Plan:
    """What an upgrade of `cfg.database` would do; refuses a database newer than the code."""
    available = sorted(code_migrations() if known is None else known)
    newest = available[-1][0] if available else 0
    if not cfg.database.is_file():
        return Plan(cfg.database, 0, newest, ())
    try:
        current = store_backup.schema_version(cfg.database)
    except CallvaultError as exc:
        raise UpgradeError(f"cannot read the schema version of {cfg.database}: {exc}") from None
    if current > newest:
        raise UpgradeError(
            f"refusing to downgrade: {cfg.database} has schema {current}, this release knows "
            f"schemas up to {newest}. The database was upgraded by a newer release; install "
            f"that release again (or restore a backup made before it: `callvault backup list`)"
        )
    return Plan(cfg.database, current, newest, tuple(v for v, _ in available if v > current))


# ---- readiness
async def database_ready(cfg: Config, newest: int, before: dict[str, int]) -> list[Check]:
    db = cfg.database
    version = await asyncio.to_thread(store_backup.schema_version, db)
    checks = [Check("schema", version == newest, f"schema {version} (this release: {newest})")]
    lines = await asyncio.to_thread(store_maint.quick_check, db)
    checks.append(Check("database integrity", lines == ["ok"], "; ".join(lines[:3])))
    why = await asyncio.to_thread(store_maint.writable, db)
    checks.append(Check("database writable", not why, why or "a write transaction opens"))
    if before:
        after = await asyncio.to_thread(store_backup.table_counts, db)
        lost = [
            f"{t}: {n} -> {after.get(t, 'table gone')}"
            for t, n in sorted(before.items())
            if after.get(t, -1) < n
        ]
        detail = "; ".join(lost) or f"{len(before)} tables, none lost rows"
        checks.append(Check("rows kept", not lost, detail))
    return checks


async def box_ready(cfg: Config) -> list[Check]:
    """The running box's readiness: what /readyz answers (appliance.ops.health): Asterisk over
    AMI, a real database write, the serving process's models, free disk."""
    from appliance.ops import health

    try:
        db = await Database(cfg.database).open()
    except CallvaultError as exc:
        return [Check("database opens", False, str(exc))]
    try:
        result = await health.readiness(cfg, db)
    finally:
        await db.close()
    return [Check(c.name, c.ok, c.detail) for c in result.checks]


# ---- units
def _systemctl(action: str, units: Sequence[str]) -> None:
    if not units:
        return
    try:
        subprocess.run(["systemctl", action, *units], check=True, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise UpgradeError(f"--restart {' '.join(units)}: no systemctl on this box") from None
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace").strip()
        raise UpgradeError(f"systemctl {action} {' '.join(units)} failed: {err}") from None


# ---- the upgrade
async def _backup(cfg: Config, steps: Steps) -> backup.Created:
    steps.start("backup: snapshot, encrypt, verify (rehearses the migrations on the copy)")
    created = await backup.create(cfg)
    if not created.report.ok:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in created.report.failures)
        rehearsal = any(c.name == "database opens" for c in created.report.failures)
        what = (
            "rehearsing the migrations on the backup's copy failed"
            if rehearsal
            else ("the backup failed verification")
        )
        raise UpgradeError(f"{what}; nothing was changed ({failed})")
    steps.done(f"verified backup {created.archive.name} ({created.rows} rows)")
    return created


async def _migrate(cfg: Config, known: Migrations | None) -> None:
    db = Database(cfg.database)
    await db.open(known=known)
    await db.close()


async def _rollback(cfg: Config, archive: Path) -> None:
    """Put the archive's database back into the live file (see store.maint.restore_into)."""
    master, _kid = await asyncio.to_thread(backup._master, cfg)
    scratch = Path(
        await asyncio.to_thread(tempfile.mkdtemp, "", "callvault-rollback-", cfg.backup.work_dir)
    )
    try:
        unpacked = await asyncio.to_thread(arc.extract, archive, master, scratch)
        bad = [c for c in unpacked.checks if not c.ok]
        if bad or arc.DB_MEMBER not in unpacked.found:
            raise UpgradeError(
                f"cannot read {archive.name} back: {bad[0].detail if bad else 'no db'}"
            )
        await asyncio.to_thread(store_maint.restore_into, cfg.database, scratch / arc.DB_MEMBER)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


async def _poll(probe: Callable[[], Awaitable[list[Check]]], timeout_s: float) -> list[Check]:
    deadline = time.monotonic() + timeout_s
    while True:
        checks = await probe()
        if all(c.ok for c in checks) or time.monotonic() >= deadline:
            return checks
        await asyncio.sleep(1.0)


async def upgrade(
    cfg: Config,
    *,
    known: Migrations | None = None,
    probe: Probe = box_ready,
    units: Sequence[str] = (),
    ready_timeout_s: float = 60.0,
    steps: Steps | None = None,
) -> Outcome:
    """Back up, migrate in one transaction, check readiness, roll back when not ready.

    `known` replaces this release's migrations (tests inject an older or a failing set);
    `probe` the box's readiness probe (database checks always run).
    """
    steps = steps or Silent()
    t0 = time.monotonic()
    steps.start("plan")
    p = await asyncio.to_thread(plan, cfg, known)
    out = Outcome(p)
    if not cfg.database.is_file():
        steps.done(f"no database at {cfg.database} yet: created at the first start")
        return out
    if not p.needed:
        steps.done(f"schema {p.current} is this release's: nothing to migrate")
        return out
    steps.done(f"schema {p.current} -> {p.newest}: migrations {', '.join(map(str, p.pending))}")

    created = await _backup(cfg, steps)
    out.archive = created.archive
    before = {k: int(v) for k, v in created.report.manifest.get("tables", {}).items()}
    out.timings["backup_s"] = time.monotonic() - t0

    if units:
        steps.start(f"stop {' '.join(units)}")
        await asyncio.to_thread(_systemctl, "stop", units)
        steps.done(f"stopped {' '.join(units)}")
    t1 = time.monotonic()
    steps.start(f"migrate to schema {p.newest} (one transaction)")
    try:
        await _migrate(cfg, known)
    except CallvaultError as exc:
        # The named units stay stopped: this release would try the same migration at start.
        out.reason = str(exc)
        steps.failed(f"migration failed, rolled back: schema {p.current} kept")
        out.timings["migrate_s"] = time.monotonic() - t1
        return out
    out.applied = p.pending
    out.timings["migrate_s"] = time.monotonic() - t1
    steps.done(f"migrated to schema {p.newest} in {out.timings['migrate_s']:.1f} s")

    await _settle(
        cfg,
        out,
        archive=created.archive,
        before=before,
        probe=probe,
        units=units,
        ready_timeout_s=ready_timeout_s,
        steps=steps,
    )
    out.timings["total_s"] = time.monotonic() - t0
    return out


async def _settle(
    cfg: Config,
    out: Outcome,
    *,
    archive: Path,
    before: dict[str, int],
    probe: Probe,
    units: Sequence[str],
    ready_timeout_s: float,
    steps: Steps,
) -> None:
    """Start the units, poll readiness; not ready in time: restore the database."""
    p = out.plan
    if units:
        steps.start(f"start {' '.join(units)}")
        await asyncio.to_thread(_systemctl, "start", units)
        steps.done(f"started {' '.join(units)}")
    t2 = time.monotonic()
    steps.start("readiness")

    async def ready() -> list[Check]:
        return await database_ready(cfg, p.newest, before) + await probe(cfg)

    out.ready = await _poll(ready, ready_timeout_s)
    out.timings["ready_s"] = time.monotonic() - t2
    if all(c.ok for c in out.ready):
        steps.done("ready")
        return
    failed = [c for c in out.ready if not c.ok]
    out.reason = "not ready: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
    steps.failed(out.reason)
    steps.start(f"roll back: restore the database from {archive.name}")
    if units:
        await asyncio.to_thread(_systemctl, "stop", units)
    await _rollback(cfg, archive)
    out.rolled_back = True
    steps.done(f"rolled back to schema {p.current}")
