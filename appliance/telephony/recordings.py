"""Recordings: from Asterisk's MixMonitor spool into the appliance's store.

MixMonitor writes `cv-<call>-<line>-<leg>.wav` into the spool (a tmpfs: plaintext audio never
sits on persistent disk) and finalises the WAV header when the channel is gone. The appliance
takes each file once it is complete, encrypts it as a stream into `recordings_dir` under the
data keys of the call's subjects (appliance.privacy), records leg, duration and the
plaintext's sha256, and only then removes the plaintext. A sweep at start and after reconnects
takes files whose call ended while nobody was listening, so no recording is left behind.

Reading a recording back (`open_recording`) decrypts it as a stream, checks the sha256 at the
end, and writes an audit row before the first byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import struct
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.privacy import Actor, Privacy
from appliance.privacy.stream import CIPHER, StreamError
from appliance.store import Database, RecordingRow

log = logging.getLogger(__name__)

SPOOL_NAME = re.compile(
    r"^cv-(?P<call>[0-9]+\.[0-9]+)-(?P<line>[a-z][a-z0-9_-]*)-(?P<leg>caller|callee|mixed)\.wav$"
)


@dataclass(frozen=True)
class WavInfo:
    complete: bool
    duration_s: float
    rate: int


def wav_info(path: Path) -> WavInfo:
    """Whether the header agrees with the file (MixMonitor fixes it on close), and duration."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(44)
    return wav_info_of(head, size)


def wav_info_of(head: bytes, size: int) -> WavInfo:
    """`wav_info` from the first 44 bytes and the total size (e.g. of decrypted audio)."""
    if len(head) < 44 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return WavInfo(complete=False, duration_s=0.0, rate=0)
    riff_size = struct.unpack_from("<I", head, 4)[0]
    channels, rate = struct.unpack_from("<HI", head, 22)
    bits = struct.unpack_from("<H", head, 34)[0]
    data_size = struct.unpack_from("<I", head, 40)[0]
    bytes_per_s = rate * channels * max(bits // 8, 1)
    complete = riff_size == size - 8 and data_size == size - 44
    duration = (size - 44) / bytes_per_s if bytes_per_s else 0.0
    return WavInfo(complete=complete, duration_s=round(duration, 3), rate=rate)


def spool_filesystem(spool: Path) -> str | None:
    """The filesystem type the spool lives on (from /proc/mounts), None if unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    target = str(spool.resolve())
    for line in mounts:
        fields = line.split()
        # The longest mount point containing the spool is the one it lives on.
        if (
            len(fields) >= 3
            and (target + "/").startswith(fields[1].rstrip("/") + "/")
            and len(fields[1]) >= len(best)
        ):
            best, fstype = fields[1], fields[2]
    return fstype


def context(call_id: str, line: str, leg: str) -> str:
    """What the file key is bound to: a file moved onto another recording's row won't open."""
    return f"recording:{call_id}:{line}:{leg}"


class RecordingStore:
    def __init__(self, spool: Path, target: Path, db: Database, privacy: Privacy) -> None:
        self.spool = spool
        self.target = target
        self.db = db
        self.privacy = privacy

    def spool_files(self, call_id: str | None = None) -> list[Path]:
        if not self.spool.is_dir():
            return []
        out = []
        for p in sorted(self.spool.iterdir()):
            m = SPOOL_NAME.match(p.name)
            if m and (call_id is None or m.group("call") == call_id):
                out.append(p)
        return out

    def remove_partials(self) -> int:
        """Delete `*.cvae.part` files (an encryption cut short by a crash); returns how many."""
        if not self.target.is_dir():
            return 0
        n = 0
        for part in self.target.rglob("*.cvae.part"):
            part.unlink(missing_ok=True)
            n += 1
        return n

    async def ingest_call(self, call_id: str, timeout_s: float = 10.0) -> list[RecordingRow]:
        """Take a finished call's recordings; waits for MixMonitor to close the files."""
        deadline = time.monotonic() + timeout_s
        rows = []
        for path in await asyncio.to_thread(self.spool_files, call_id):
            while True:
                info = await asyncio.to_thread(wav_info, path)
                if info.complete or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            rows.append(await self._take(path, flags="" if info.complete else "incomplete"))
        return rows

    async def sweep(self, min_age_s: float = 30.0) -> list[RecordingRow]:
        """Take files no live call writes to any more (MixMonitor writes every 20 ms)."""
        rows = []
        now = time.time()
        for path in await asyncio.to_thread(self.spool_files):
            try:
                age = now - (await asyncio.to_thread(path.stat)).st_mtime
            except FileNotFoundError:
                continue
            if age >= min_age_s:
                info = await asyncio.to_thread(wav_info, path)
                rows.append(
                    await self._take(path, flags="orphan" if info.complete else "orphan,incomplete")
                )
        return rows

    async def _take(self, path: Path, flags: str) -> RecordingRow:
        m = SPOOL_NAME.match(path.name)
        if m is None:
            raise ValueError(f"not a recording name: {path.name}")
        call_id, line, leg = m.group("call"), m.group("line"), m.group("leg")
        day = time.strftime("%Y/%m/%d", time.localtime(float(call_id)))
        dest = self.target / day / f"{call_id}-{line}-{leg}.wav.cvae"
        info = await asyncio.to_thread(wav_info, path)
        subjects = await self.privacy.subjects.call_key_subjects(call_id)
        sealed = await self.privacy.files.encrypt(path, dest, subjects, context(call_id, line, leg))
        row = RecordingRow(
            call_id=call_id,
            line=line,
            leg=leg,
            path=str(dest),
            format="wav/slin8" if info.rate == 8000 else f"wav/{info.rate}",
            duration_s=info.duration_s,
            size_bytes=sealed.plain_bytes,
            sha256=sealed.sha256,
            flags=flags,
            cipher=CIPHER,
            key_subjects=",".join(map(str, subjects)),
            stored_bytes=sealed.stored_bytes,
        )
        await self.db.add_recording(row)
        # Only now may the spool copy go: the row and the encrypted file both exist.
        await asyncio.to_thread(path.unlink, missing_ok=True)
        log.info("recording %s %s/%s %.1fs %s", call_id, line, leg, info.duration_s, flags or "ok")
        return row

    async def open_recording(
        self,
        row: Mapping[str, Any],
        *,
        actor: Actor,
        purpose: str,
        action: str = "recording.play",
    ) -> AsyncIterator[bytes]:
        """The recording's plaintext WAV as a stream of verified chunks.

        The read is audited (`action`: recording.play, recording.export, ...) before the first
        byte. Chunks are authenticated one by one; truncation, tampering or a sha256 that does
        not match the row raises StreamError at the point it is known (at the latest at the
        end), so a consumer that must not keep partial data discards it on error. A subject's
        erasure makes this raise KeyShreddedError.
        """
        if row.get("cipher") != CIPHER:
            raise StreamError(
                f"recording {row['id']}: unknown storage format {row.get('cipher')!r}"
            )
        await self.privacy.audit.record(actor, action, f"recording:{row['id']}", purpose)
        subjects = [int(s) for s in str(row["key_subjects"]).split(",")]
        ctx = context(str(row["call_id"]), str(row["line"]), str(row["leg"]))
        digest = hashlib.sha256()
        async for chunk in self.privacy.files.decrypt(Path(str(row["path"])), subjects, ctx):
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != row["sha256"]:
            raise StreamError(f"recording {row['id']}: decrypted audio does not match its sha256")
