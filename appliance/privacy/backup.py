"""Encrypted backups: `callvault backup create|verify|restore|list|run`.

`create` writes one archive (appliance.privacy.backup_archive: an online SQLite snapshot, the
encrypted recordings as stored, a manifest; one AES-256-GCM stream under a key derived from
the master key) atomically into `backup.dir`, then verifies it. **The master key is never in
an archive**: keep it — and `<state_dir>/keys/`, which also holds the erasure journal — off
the backup media, or whoever holds both can open every data key that was not shredded. A
full disk leaves no partial archive and changes nothing else.

`verify` decrypts an archive into a scratch directory (`backup.work_dir`, never the backup
media: the database inside is only encrypted column by column) and reports each check:
stream authentication, every file's sha256 against the manifest, `PRAGMA integrity_check`,
schema version, rows per table, the key ring opening under this master key, and a rehearsal
of the erasures a restore would re-apply (appliance.privacy.backup_erasures).

`restore` refuses while another process has the database open (unless forced), prepares the
archive in `<state_dir>/.restore-<ts>` — verified, later erasures re-applied, VACUUMed —
and only then swaps it in; the replaced database and recordings are kept in
`<state_dir>/state.before-restore-<ts>` (personal data: delete it once the restore is
confirmed). Data retention purged after the archive was made comes back with it and goes
again at the next purge run.

`run` (the systemd timer) is create + verify + prune to `backup.keep` verified archives.
Beside each archive, `<archive>.json` (sizes, counts, key id: nothing secret) records its
verification for `list` and pruning.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.privacy import backup_archive as arc
from appliance.privacy import backup_erasures, crypto
from appliance.privacy.backup_archive import BackupError, Check
from appliance.privacy.backup_erasures import ACTOR
from appliance.privacy.service import Privacy, master_key_source
from appliance.store import Database
from appliance.store import backup as store_backup

__all__ = [
    "BackupError",
    "Check",
    "Created",
    "Listed",
    "Report",
    "Restored",
    "create",
    "database_users",
    "list_archives",
    "prune",
    "restore",
    "run",
    "verify",
]


@dataclass(frozen=True)
class Report:
    archive: Path
    checks: tuple[Check, ...]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


@dataclass(frozen=True)
class Created:
    archive: Path
    stored_bytes: int
    files: int
    rows: int
    seconds: float
    not_included: int
    """Recordings the snapshot names that could not go in (outside recordings_dir)."""
    report: Report


@dataclass(frozen=True)
class Restored:
    archive: Path
    aside: Path
    rows: int
    files: int
    reapplied: int


@dataclass(frozen=True)
class Listed:
    path: Path
    created_at: float
    stored_bytes: int
    verified: dict[str, Any] | None


@dataclass(frozen=True)
class _FixedKey:
    """The master key as a MasterKeySource for a scratch database: no staging, no rotation."""

    key: bytes

    def load(self) -> bytes:
        return self.key

    def stage(self, new_passphrase: bytes | None = None) -> bytes:
        raise BackupError("no master key rotation inside a backup")

    def staged(self) -> bytes | None:
        return None

    def commit(self) -> None:
        raise BackupError("no master key rotation inside a backup")


def _master(cfg: Config) -> tuple[bytes, str]:
    """The master key and its id; never creates one (a backup of nothing would need none)."""
    p = cfg.privacy
    if p.key_source == "file":
        needed = p.master_key_path(cfg.state_dir)
    else:
        needed = cfg.state_dir / "keys" / "master.scrypt"
    if not needed.exists():
        raise BackupError(
            f"no master key at {needed}: archives are encrypted under it, and it is created "
            "when the appliance first starts"
        )
    key = master_key_source(cfg).load()
    return key, crypto.key_id(key)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One backup command at a time per backup directory (the timer and an operator)."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot use the backup directory (backup.dir): {exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup command is running on {directory}") from None
        yield
    finally:
        os.close(fd)


async def _prepare(
    cfg: Config, archive: Path, master: bytes, kid: str, dest: Path, *, restoring: bool
) -> Report:
    """Unpack `archive` into `dest`, check it, and re-apply later erasures to the copy."""
    side = await asyncio.to_thread(arc.read_sidecar, archive)
    if side and side.get("kek_id") not in (None, kid):
        why = (
            f"made under master key {side['kek_id']}; this box's is {kid} (rotated since? "
            "the archive and the keys inside it open only with the key it was made under)"
        )
        return Report(archive, (Check("master key", False, why),))
    u = await asyncio.to_thread(arc.extract, archive, master, dest)
    checks = list(u.checks)
    if not all(c.ok for c in checks):
        return Report(archive, tuple(checks), u.manifest or {})
    checks += arc.file_checks(u)
    db_path = dest / arc.DB_MEMBER
    bad_manifest = any(c.name == "manifest" and not c.ok for c in checks)
    if u.manifest is None or bad_manifest or arc.DB_MEMBER not in u.found:
        return Report(archive, tuple(checks), u.manifest or {})
    manifest = u.manifest
    # Even with a file that does not match, the database checks say more about the damage.
    checks += await asyncio.to_thread(arc.db_checks, db_path, manifest)
    if not all(c.ok for c in checks):
        return Report(archive, tuple(checks), manifest)
    scfg = replace(cfg, state_dir=dest, database=db_path, recordings_dir=dest / arc.RECORDINGS)
    step = "database opens"  # it migrates an older schema forward, and refuses a newer one
    try:
        async with Database(db_path) as db:
            privacy = Privacy(scfg, db, _FixedKey(master))
            step = "keys"
            await privacy.keyring.system_key("index")
            checks.append(Check(step, True, f"the key ring opens under master key {kid}"))
            step = "erasures re-applied"
            files_root = dest / arc.RECORDINGS
            n = await backup_erasures.reapply(cfg, privacy, manifest, files_root, archive.name)
            where = "the restored copy" if restoring else "the scratch copy"
            detail = f"{n} erasure(s) recorded after this archive re-applied to {where}"
            checks.append(Check(step, True, detail))
            if restoring:
                step = "restore audited"
                await privacy.audit.record(
                    ACTOR, "backup.restore", f"backup:{archive.name}", "restore from backup",
                    f"created_at={manifest['created_at']} erasures_reapplied={n}",
                )  # fmt: skip
                manifest["reapplied"] = n
    except CallvaultError as exc:
        checks.append(Check(step, False, f"{type(exc).__name__}: {exc}"))
    return Report(archive, tuple(checks), manifest)


# ---- the commands
def _resolve(cfg: Config, archive: Path | str | None) -> Path:
    if archive is None:
        found = list_archives(cfg)
        if not found:
            raise BackupError(f"no archives in {cfg.backup.dir}")
        return found[-1].path
    path = Path(archive)
    if not path.exists() and (cfg.backup.dir / path).exists():
        path = cfg.backup.dir / path
    if not path.is_file():
        raise BackupError(f"no archive {archive} (nor in {cfg.backup.dir})")
    return path


def _scratch(cfg: Config) -> Path:
    return Path(tempfile.mkdtemp(prefix="callvault-verify-", dir=cfg.backup.work_dir))


async def _verify(cfg: Config, archive: Path) -> Report:
    master, kid = await asyncio.to_thread(_master, cfg)
    scratch = await asyncio.to_thread(_scratch, cfg)
    try:
        report = await _prepare(cfg, archive, master, kid, scratch, restoring=False)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    if archive.parent.resolve() == cfg.backup.dir.resolve():
        failed = [c.name for c in report.failures]
        await asyncio.to_thread(
            arc.update_sidecar,
            archive,
            verified={"at": time.time(), "ok": report.ok, "failed": failed},
        )
    return report


async def verify(cfg: Config, archive: Path | str | None = None) -> Report:
    """Decrypt into a scratch directory and check everything (see the module docstring)."""
    path = _resolve(cfg, archive)
    with _locked(cfg.backup.dir):
        return await _verify(cfg, path)


async def create(cfg: Config, *, clock: Callable[[], float] = time.time) -> Created:
    """Write an archive atomically, then verify it (the sidecar records the outcome)."""
    t0 = time.monotonic()
    with _locked(cfg.backup.dir):
        for stale in cfg.backup.dir.glob("*.part"):
            stale.unlink(missing_ok=True)  # a run killed midway; the lock says none is live
        master, kid = await asyncio.to_thread(_master, cfg)
        work = Path(
            await asyncio.to_thread(tempfile.mkdtemp, "", "callvault-backup-", cfg.backup.work_dir)
        )
        try:
            archive, manifest, stored, outside = await asyncio.to_thread(
                arc.write_archive, cfg, master, kid, work, clock
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        seconds = time.monotonic() - t0
        report = await _verify(cfg, archive)
    return Created(
        archive=archive,
        stored_bytes=stored,
        files=len(manifest["files"]),
        rows=sum(manifest["tables"].values()),
        seconds=seconds,
        not_included=outside,
        report=report,
    )


def list_archives(cfg: Config) -> list[Listed]:
    """Archives in the backup directory, oldest first, with their verification record."""
    out = []
    for path in sorted(cfg.backup.dir.glob(f"callvault-*{arc.SUFFIX}")):
        side = arc.read_sidecar(path) or {}
        out.append(
            Listed(
                path=path,
                created_at=float(side.get("created_at", path.stat().st_mtime)),
                stored_bytes=path.stat().st_size,
                verified=side.get("verified"),
            )
        )
    return sorted(out, key=lambda a: (a.created_at, a.path.name))


def prune(cfg: Config, keep: int | None = None) -> list[Path]:
    """Keep the newest `keep` verified archives; delete every archive older than the oldest
    of them (failed or unverified ones too). Nothing goes while fewer are verified."""
    keep = cfg.backup.keep if keep is None else keep
    archives = list_archives(cfg)
    good = [a for a in archives if a.verified and a.verified.get("ok")]
    if len(good) < keep:
        return []
    oldest_kept = good[-keep]
    removed = []
    for a in archives:
        if (a.created_at, a.path.name) < (oldest_kept.created_at, oldest_kept.path.name):
            a.path.unlink()
            arc.sidecar(a.path).unlink(missing_ok=True)
            removed.append(a.path)
    if removed:
        arc.fsync_dir(cfg.backup.dir)
    return removed


async def run(cfg: Config) -> tuple[Created, list[Path]]:
    """`backup run` (the systemd timer): create, verify, and prune only after a good one."""
    created = await create(cfg)
    if not created.report.ok:
        failed = ", ".join(f"{c.name}: {c.detail}" for c in created.report.failures)
        raise BackupError(f"{created.archive.name} failed verification ({failed}); kept all")
    with _locked(cfg.backup.dir):
        removed = await asyncio.to_thread(prune, cfg)
    return created, removed


# ---- restore
def database_users(cfg: Config) -> list[tuple[int, str]]:
    """(pid, command) of other processes that have the database (or its WAL) open."""
    wanted = {str(cfg.database.resolve()) + s for s in ("", "-wal", "-shm")}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            fds = list((proc / "fd").iterdir())
            hit = any(str(fd.readlink()) in wanted for fd in fds if fd.is_symlink())
            if hit:
                found.append((int(proc.name), (proc / "comm").read_text().strip()))
        except OSError:
            continue  # gone meanwhile, or not ours to inspect
    return found


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(Path(root) / name, uid, gid)


def _swap(cfg: Config, stage: Path, aside: Path) -> None:
    """Move the live database and recordings into `aside`, the staged ones into place; on any
    failure move everything back."""
    owner = cfg.state_dir.stat()
    aside.mkdir(mode=0o700)
    moved: list[tuple[Path, Path]] = []
    try:
        for suffix in ("", "-wal", "-shm"):
            live = Path(str(cfg.database) + suffix)
            if live.exists():
                shutil.move(live, aside / live.name)
                moved.append((live, aside / live.name))
        if cfg.recordings_dir.exists():
            shutil.move(cfg.recordings_dir, aside / arc.RECORDINGS)
            moved.append((cfg.recordings_dir, aside / arc.RECORDINGS))
        staged_rec = stage / arc.RECORDINGS
        staged_rec.mkdir(exist_ok=True, mode=0o750)
        staged = ((stage / arc.DB_MEMBER, cfg.database), (staged_rec, cfg.recordings_dir))
        for src, dst in staged:
            if os.geteuid() == 0:
                _chown_tree(src, owner.st_uid, owner.st_gid)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dst)
            moved.append((src, dst))
        for d in {cfg.database.parent, cfg.recordings_dir.parent, aside}:
            arc.fsync_dir(d)
    except BaseException:
        for src, dst in reversed(moved):
            with contextlib.suppress(OSError):
                shutil.move(dst, src)
        with contextlib.suppress(OSError):
            aside.rmdir()
        raise


async def restore(
    cfg: Config, archive: Path | str, *, force: bool = False, clock: Callable[[], float] = time.time
) -> Restored:
    """Replace the live database and recordings with an archive's, erasures re-applied."""
    path = _resolve(cfg, archive)
    users = await asyncio.to_thread(database_users, cfg)
    if users and not force:
        who = ", ".join(f"{pid} ({comm})" for pid, comm in users)
        raise BackupError(
            f"the appliance is running: process {who} has {cfg.database} open; stop it first "
            "(systemctl stop callvault callvault-admin) or pass --force"
        )
    master, kid = await asyncio.to_thread(_master, cfg)
    stamp = datetime.fromtimestamp(clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
    stage = cfg.state_dir / f".restore-{stamp}"
    aside = cfg.state_dir / f"state.before-restore-{stamp}"
    if aside.exists():
        raise BackupError(f"{aside} exists already; try again in a second")
    await asyncio.to_thread(stage.mkdir, 0o700, True, False)
    try:
        report = await _prepare(cfg, path, master, kid, stage, restoring=True)
        if not report.ok:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in report.failures)
            raise BackupError(f"{path.name} failed verification, nothing was changed: {failed}")
        manifest = report.manifest
        if Path(manifest["recordings_dir"]) != cfg.recordings_dir:
            raise BackupError(
                f"{path.name} holds recordings of {manifest['recordings_dir']}, this box keeps "
                f"them in {cfg.recordings_dir} (the database names them by path); set "
                "recordings_dir to match, then restore"
            )
        await asyncio.to_thread(store_backup.vacuum, stage / arc.DB_MEMBER)
        await asyncio.to_thread(_swap, cfg, stage, aside)
    except OSError as exc:
        raise BackupError(f"restore failed, nothing was changed: {exc}") from None
    finally:
        await asyncio.to_thread(shutil.rmtree, stage, True)
    return Restored(
        archive=path,
        aside=aside,
        rows=sum(manifest["tables"].values()),
        files=len(manifest["files"]),
        reapplied=int(manifest.get("reapplied", 0)),
    )
