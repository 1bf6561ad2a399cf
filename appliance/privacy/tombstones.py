"""The erasure journal: which subjects were erased when, kept outside the database and backups.

Crypto-shredding deletes a subject's wrapped data key from the database, but a backup taken
before the erasure still holds that key (wrapped under the master key, which opens it). So
every erasure also appends a tombstone here — the subject's blind index, the time and the
request id, nothing that names the person — and restoring a backup (or verifying one, in its
scratch copy) erases again every subject whose tombstone is newer than the backup
(appliance.privacy.backup). The journal lives beside the master key in `<state_dir>/keys/`,
never inside the database or an archive: keep it with the master key, off the backup media.

The tombstone is written, fsynced, *before* the erasure commits. A crash between the two
leaves a tombstone for an erasure that did not happen yet; the request resumes and does it,
and a restore meanwhile erases the subject (more, never less, than was asked). A crash
during the write leaves a torn last line, which was never followed by a commit: readers skip
it, and the next append starts on a fresh line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config
from appliance.errors import CallvaultError

FILE_NAME = "erasures.jsonl"


class JournalError(CallvaultError):
    pass


@dataclass(frozen=True)
class Tombstone:
    blind_index: bytes
    at: float
    request_id: int | None


def journal_path(cfg: Config) -> Path:
    return cfg.state_dir / "keys" / FILE_NAME


def append(path: Path, blind_index: bytes, at: float, request_id: int | None) -> None:
    """Append one tombstone durably (fsync of the file, and of the directory when new)."""
    line = json.dumps(
        {"blind_index": blind_index.hex(), "at": at, "request_id": request_id},
        separators=(",", ":"),
    ).encode()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        lead = b""
        if size:
            with path.open("rb") as fh:
                fh.seek(size - 1)
                lead = b"" if fh.read(1) == b"\n" else b"\n"  # after a torn line
        # One write of a line well under PIPE_BUF: appends from two processes do not mix.
        os.write(fd, lead + line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if size == 0:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read(path: Path) -> list[Tombstone]:
    """Every tombstone, oldest first; a missing journal is an empty one."""
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise JournalError(f"cannot read the erasure journal {path}: {exc}") from None
    out = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
            rid = doc["request_id"]
            out.append(
                Tombstone(
                    blind_index=bytes.fromhex(doc["blind_index"]),
                    at=float(doc["at"]),
                    request_id=None if rid is None else int(rid),
                )
            )
        except (ValueError, KeyError, TypeError):
            if not raw.rstrip().endswith(b"}"):
                continue  # a torn write (crash mid-append): it never preceded a commit
            raise JournalError(f"{path} line {number}: not a tombstone") from None
    return sorted(out, key=lambda t: t.at)
