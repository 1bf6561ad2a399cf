"""The backup archive format: a tar of the snapshot, the recordings and a manifest, encrypted
as one cvae1 stream; writing it, unpacking it, and checking what was unpacked.

    cvae1 stream (appliance.privacy.stream: chunked AES-256-GCM, every chunk authenticated,
    truncation, reordering and extension detected) over a tar (PAX) of
        db/callvault.db          consistent online snapshot (sqlite3 backup API), VACUUMed
        recordings/<y/m/d>/…     the encrypted recordings the snapshot refers to, as stored
        manifest.json            sizes and sha256 of every file, rows per table, schema
                                 version, created_at, appliance version, master key id

The archive key is HKDF(master key, the stream's random salt, "callvault backup|cvae1"): a
fresh key per archive that nothing but the master key opens. (Not a key-ring key: the key
ring lives in the database, which is inside the archive.) The master key itself never goes
into an archive.

The tar is produced and consumed as a stream of blocks, so neither a plaintext tar nor the
whole archive is ever held in memory or written to disk; the manifest comes last, with the
digests computed on the way.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from appliance import __version__
from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.privacy import crypto, stream
from appliance.store import backup as store_backup

FORMAT = "callvault-backup/1"
SUFFIX = ".cvbk"
DB_MEMBER = "db/callvault.db"
MANIFEST = "manifest.json"
RECORDINGS = "recordings"
_KEY_INFO = b"callvault backup|" + stream.CIPHER.encode()
_BLOCK = 1 << 20
_MAX_MANIFEST = 256 * 1024 * 1024
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class BackupError(CallvaultError):
    pass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def archive_key(master: bytes, salt: bytes) -> bytes:
    return crypto.derive_key(master, salt=salt, info=_KEY_INFO)


# ---- files
def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(json.dumps(doc, indent=1, sort_keys=True).encode())
        fh.flush()
        os.fsync(fh.fileno())


def sidecar(archive: Path) -> Path:
    return archive.with_name(archive.name + ".json")


def read_sidecar(archive: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(sidecar(archive).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackupError(f"unreadable {sidecar(archive)}: {exc}") from None
    return dict(doc)


def update_sidecar(archive: Path, **changes: Any) -> None:
    doc = read_sidecar(archive) or {"archive": archive.name}
    doc.update(changes)
    tmp = sidecar(archive).with_name(sidecar(archive).name + ".part")
    try:
        write_json(tmp, doc)
        tmp.replace(sidecar(archive))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def no_space(exc: OSError) -> bool:
    return exc.errno in _FULL


# ---- the archive stream
class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte blocks (tar out, plaintext in, and back)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._cur = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._cur:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._cur = memoryview(block)
        out = memoryview(buffer).cast("B")
        n = min(len(out), len(self._cur))
        out[:n] = self._cur[:n]
        self._cur = self._cur[n:]
        return n


def _tar_header(name: str, size: int, mode: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(mtime)
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _file_blocks(path: Path, name: str, files: list[dict[str, Any]]) -> Iterator[bytes]:
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return  # erased or purged since the snapshot: a restore would shred it anyway
    with fh:
        st = os.fstat(fh.fileno())
        yield _tar_header(name, st.st_size, st.st_mode & 0o777, st.st_mtime)
        digest, left = hashlib.sha256(), st.st_size
        while left:
            block = fh.read(min(_BLOCK, left))
            if not block:
                raise BackupError(f"{path} shrank while it was being backed up")
            digest.update(block)
            left -= len(block)
            yield block
        yield b"\0" * (-st.st_size % tarfile.BLOCKSIZE)
    files.append({"path": name, "bytes": st.st_size, "sha256": digest.hexdigest()})


def _archive_blocks(
    snapshot: Path, recordings: Sequence[tuple[Path, str]], manifest: dict[str, Any]
) -> Iterator[bytes]:
    files: list[dict[str, Any]] = manifest["files"]
    yield from _file_blocks(snapshot, DB_MEMBER, files)
    for path, name in recordings:
        yield from _file_blocks(path, name, files)
    doc = json.dumps(manifest, indent=1, sort_keys=True).encode()
    yield _tar_header(MANIFEST, len(doc), 0o600, time.time())
    yield doc + b"\0" * (-len(doc) % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _recordings_of(snapshot: Path, root: Path) -> tuple[list[tuple[Path, str]], int]:
    """(file, archive name) for every recording the snapshot refers to; how many lie outside
    `root` (a recordings_dir changed since) and cannot go in."""
    out, outside = [], 0
    for raw in sorted(store_backup.recording_paths(snapshot)):
        path = Path(raw)
        try:
            rel = path.relative_to(root)
        except ValueError:
            outside += 1
            continue
        out.append((path, f"{RECORDINGS}/{rel.as_posix()}"))
    return out, outside


def _archive_name(directory: Path, at: float) -> str:
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        name = f"callvault-{stamp}{'' if n == 0 else f'-{n}'}{SUFFIX}"
        if not any((directory / (name + s)).exists() for s in ("", ".part", ".json")):
            return name
    raise BackupError(f"no free archive name for {stamp} in {directory}")


def write_archive(
    cfg: Config, master: bytes, kid: str, work: Path, clock: Callable[[], float]
) -> tuple[Path, dict[str, Any], int, int]:
    directory = cfg.backup.dir
    if not cfg.database.is_file():
        raise BackupError(f"no database at {cfg.database}: nothing to back up")
    snap = work / "callvault.db"
    created_at = clock()
    try:
        store_backup.snapshot(cfg.database, snap)
    except CallvaultError as exc:
        raise BackupError(f"{exc} (snapshot in {work}); nothing was written") from None
    used = store_backup.kek_ids(snap)
    if used - {kid}:
        raise BackupError(
            f"the database's keys are wrapped under master key {', '.join(sorted(used))}, "
            f"not this one ({kid}): a key rotation is unfinished (start the appliance) or the "
            "key file is wrong"
        )
    recordings, outside = _recordings_of(snap, cfg.recordings_dir)
    tables = store_backup.table_counts(snap)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": created_at,
        "appliance_version": __version__,
        "schema_version": store_backup.schema_version(snap),
        "kek_id": kid,
        "recordings_dir": str(cfg.recordings_dir),
        "tables": tables,
        "files": [],
    }
    name = _archive_name(directory, created_at)
    final, part = directory / name, directory / (name + ".part")
    side_part = directory / (name + ".json.part")
    renamed = False
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            salt = stream.new_salt()
            plain = io.BufferedReader(
                _ChunkReader(_archive_blocks(snap, recordings, manifest)), _BLOCK
            )
            sealed = stream.encrypt_stream(plain, fh, archive_key(master, salt), salt)
            fh.flush()
            os.fsync(fh.fileno())
        side = {
            "format": FORMAT,
            "archive": name,
            "created_at": created_at,
            "stored_bytes": sealed.stored_bytes,
            "kek_id": kid,
            "appliance_version": __version__,
            "schema_version": manifest["schema_version"],
            "files": len(manifest["files"]),
            "rows": sum(tables.values()),
            "verified": None,
        }
        write_json(side_part, side)
        part.replace(final)
        renamed = True
        side_part.replace(sidecar(final))
        fsync_dir(directory)
    except BaseException as exc:
        for leftover in (part, side_part, *((final,) if renamed else ())):
            leftover.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            if no_space(exc):
                raise BackupError(
                    f"no space left in {directory} while writing {name} ({exc.strerror}): the "
                    "partial archive was removed and nothing else changed; free space or "
                    "point backup.dir at larger media"
                ) from None
            raise BackupError(f"cannot write {name} in {directory}: {exc}") from None
        raise
    return final, manifest, sealed.stored_bytes, outside


# ---- unpacking and checking
def _member_ok(info: tarfile.TarInfo, seen: set[str]) -> str | None:
    """Why a member may not be unpacked, or None."""
    parts = PurePosixPath(info.name).parts
    if not info.isreg():
        return "not a regular file"
    if PurePosixPath(info.name).is_absolute() or ".." in parts or not parts:
        return "a path outside the archive"
    if info.name not in (MANIFEST, DB_MEMBER) and parts[0] != RECORDINGS:
        return "not a part of a Callvault backup"
    if info.name in seen:
        return "appears twice"
    return None


@dataclass
class Unpacked:
    manifest: dict[str, Any] | None = None
    found: dict[str, tuple[int, str]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)


def _take(tar: tarfile.TarFile, info: tarfile.TarInfo, dest: Path, out: Unpacked) -> None:
    why = _member_ok(info, set(out.found))
    if why:
        raise BackupError(f"archive member {info.name!r}: {why}")
    src = tar.extractfile(info)
    if src is None:
        raise BackupError(f"archive member {info.name!r} has no content")
    if info.name != MANIFEST:
        out.found[info.name] = _unpack_file(src, dest / info.name, info.mode)
        return
    if info.size > _MAX_MANIFEST:
        raise BackupError("the manifest is implausibly large")
    data = src.read()
    out.manifest = dict(json.loads(data))
    out.found[MANIFEST] = (len(data), hashlib.sha256(data).hexdigest())


def extract(archive: Path, master: bytes, dest: Path) -> Unpacked:
    """Decrypt and unpack into `dest`; what failed (decryption names the member it was in)
    comes back as a failed check. Only a local failure (e.g. `dest` is full) raises."""
    out = Unpacked()
    member = ""
    try:
        with archive.open("rb") as fh:
            chunks = stream.decrypt_stream(fh, lambda salt: archive_key(master, salt))
            plain = io.BufferedReader(_ChunkReader(chunks), _BLOCK)
            with tarfile.open(fileobj=plain, mode="r|") as tar:
                for info in tar:
                    member = info.name
                    _take(tar, info, dest, out)
                member = ""
            # The tar ends before the stream does: read on, so the final chunk's flag (and
            # with it a truncation or an extension) is checked too.
            while plain.read(_BLOCK):
                pass
    except stream.StreamError as exc:
        where = f" (while reading {member})" if member else ""
        out.checks.append(Check("archive decrypts", False, f"{exc}{where}"))
        return out
    except (tarfile.TarError, BackupError, ValueError) as exc:
        out.checks.append(Check("archive format", False, str(exc)))
        return out
    except OSError as exc:
        raise BackupError(f"cannot unpack {archive.name} into {dest}: {exc}") from None
    size = sum(s for s, _ in out.found.values())
    detail = f"{len(out.found)} members, {size} bytes; every chunk authenticated"
    out.checks.append(Check("archive decrypts", True, detail))
    return out


def _unpack_file(src: Any, path: Path, mode: int) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, (mode & 0o700) or 0o600)
    with os.fdopen(fd, "wb") as fh:
        while block := src.read(_BLOCK):
            digest.update(block)
            size += len(block)
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    return size, digest.hexdigest()


def file_checks(u: Unpacked) -> list[Check]:
    manifest = u.manifest
    if manifest is None:
        return [Check("manifest", False, "the archive has no manifest.json")]
    if manifest.get("format") != FORMAT:
        return [Check("manifest", False, f"unknown format {manifest.get('format')!r}")]
    made_by = f"{FORMAT}, made by Callvault {manifest['appliance_version']}"
    checks = [Check("manifest", True, made_by)]
    expected = {f["path"]: f for f in manifest["files"]}
    bad = 0
    for name, f in expected.items():
        got = u.found.get(name)
        if got is None:
            checks.append(Check(f"file {name}", False, "missing from the archive"))
        elif got != (f["bytes"], f["sha256"]):
            checks.append(
                Check(
                    f"file {name}",
                    False,
                    f"{got[0]} bytes sha256 {got[1][:16]}…, the manifest says "
                    f"{f['bytes']} bytes sha256 {f['sha256'][:16]}…",
                )
            )
        else:
            continue
        bad += 1
    for name in sorted(set(u.found) - set(expected) - {MANIFEST}):
        checks.append(Check(f"file {name}", False, "in the archive but not in the manifest"))
        bad += 1
    total = sum(int(f["bytes"]) for f in expected.values())
    detail = f"{len(expected) - bad} of {len(expected)} files ({total} bytes) match sha256"
    checks.append(Check("checksums", bad == 0, detail))
    return checks


def db_checks(db: Path, manifest: dict[str, Any]) -> list[Check]:
    lines = store_backup.integrity(db)
    checks = [Check("database integrity", lines == ["ok"], "; ".join(lines[:5]))]
    if lines != ["ok"]:
        return checks
    version = store_backup.schema_version(db)
    checks.append(
        Check(
            "schema version",
            version == manifest["schema_version"],
            f"{version} (manifest {manifest['schema_version']})",
        )
    )
    counts, want = store_backup.table_counts(db), dict(manifest["tables"])
    wrong = [
        f"{t}: {counts.get(t, 'missing')} rows, manifest {want.get(t, 'missing')}"
        for t in sorted(set(counts) | set(want))
        if counts.get(t) != want.get(t)
    ]
    detail = "; ".join(wrong) or f"{len(counts)} tables, {sum(counts.values())} rows as listed"
    checks.append(Check("row counts", not wrong, detail))
    return checks
