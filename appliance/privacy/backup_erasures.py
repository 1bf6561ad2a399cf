"""Crypto-shredding across backups: erasures recorded after an archive, applied to its copy.

An archive made before an erasure still holds the subject's wrapped data key, and the master
key opens it. So the erasure journal (appliance.privacy.tombstones, outside the database and
every archive) is replayed on each restored copy — by `backup restore` before the copy
replaces the live state, and by `backup verify` in its scratch copy as a rehearsal — with the
same erasure pipeline a request runs: rows, links, FTS entries, files, the data key.

A tombstone applies when it is at most REAPPLY_MARGIN_S older than the archive and the copy
holds a subject with its blind index that was created before it (a number that called again
after its erasure is a new subject, and keeps its new data). Legal holds are those of the
restored database, as for any erasure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.privacy import tombstones
from appliance.privacy.audit import Actor
from appliance.privacy.backup_archive import BackupError
from appliance.privacy.rights import Kind, Rights, Status
from appliance.privacy.rights.context import Context, Step, run_steps
from appliance.privacy.rights.steps import PIPELINES
from appliance.privacy.service import Privacy

REAPPLY_MARGIN_S = 600.0
"""Tombstones this much older than an archive still apply: an erasure stamps its time and
journals it, then may wait for the write lock and commit after a snapshot that began later
than its stamp. One the archive already holds finds no subject, and does nothing."""
ACTOR = Actor.system("backup")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _remapping(live_root: Path, files_root: Path) -> Callable[[list[str]], list[str]]:
    def remap(paths: list[str]) -> list[str]:
        # Live paths name the live files; here the copies in the scratch tree are meant.
        # Anything else (an access export) is not in an archive and stays untouched.
        out = []
        for raw in paths:
            try:
                out.append(str(files_root / Path(raw).relative_to(live_root)))
            except ValueError:
                continue
        return out

    return remap


async def _erase_again(
    privacy: Privacy, subject: dict[str, Any], t: tombstones.Tombstone, archive: str,
    remap: Callable[[list[str]], list[str]],
) -> None:  # fmt: skip
    """Run the erasure pipeline on the restored copy, file deletions mapped into its tree.

    As a request of its own (created, attested by the system, processed), so the restored
    audit chain and request log say what was erased again and why. It mirrors
    `Rights.process` except that the plan's file list is mapped from the live tree to the
    restored one: the live files are not this copy's to delete.
    """
    value = await privacy.keyring.subject_value(int(subject["id"]), bytes(subject["value_enc"]))
    ident = privacy.subjects.parse(value)
    if await privacy.keyring.blind_index(ident) != t.blind_index:
        raise BackupError(f"subject {subject['id']}: its identifier does not match its index")
    rights = Rights(privacy, exports_dir=privacy.cfg.state_dir / "exports")
    req = await rights.create(Kind.ERASURE, value, ACTOR, channel="cli")
    note = f"erasure request {t.request_id} of {_iso(t.at)}, re-applied on restoring {archive}"
    await rights.attest(req.id, ACTOR, note)

    def mapped(name: str, fn: Callable[[Context], Awaitable[None]]) -> Step:
        async def step(ctx: Context) -> None:
            await fn(ctx)
            plan = ctx.state.get("plan")
            if not isinstance(plan, dict) or not isinstance(plan.get("files"), list):
                raise BackupError("the erasure plan no longer lists its files; cannot map them")
            plan["files"] = remap(plan["files"])

        return (name, step) if name == "plan" else (name, fn)

    now = rights.clock()
    await privacy.db.rr_update(
        req.id,
        {"status": Status.IN_PROCESSING, "updated_at": now},
        log=(now, "process", "info", "re-applied after a restore"),
        expect_status=Status.PENDING,
    )
    ctx = Context(
        rights=rights, request_id=req.id, kind=Kind.ERASURE.value, ident=ident, actor=ACTOR,
        params={},
    )  # fmt: skip
    await run_steps(ctx, [mapped(n, fn) for n, fn in PIPELINES[Kind.ERASURE]], 0)


async def reapply(
    cfg: Config, privacy: Privacy, manifest: dict[str, Any], files_root: Path, archive: str
) -> int:
    """Erase again, in a restored copy (`privacy` is opened on it, its recordings under
    `files_root`), every subject the live erasure journal of `cfg` erased after the archive
    was made; how many."""
    since = float(manifest["created_at"]) - REAPPLY_MARGIN_S
    latest: dict[bytes, tombstones.Tombstone] = {}
    for t in tombstones.read(tombstones.journal_path(cfg)):
        if t.at >= since:
            latest[t.blind_index] = t  # read() sorts by time: the newest one stays
    remap = _remapping(Path(manifest["recordings_dir"]), files_root)
    done = 0
    for t in sorted(latest.values(), key=lambda t: t.at):
        subject = await privacy.db.subject_by_index(t.blind_index)
        if subject is None or float(subject["created_at"]) > t.at:
            continue  # erased in the archive already, or came back after the erasure
        await _erase_again(privacy, subject, t, archive, remap)
        done += 1
    return done
