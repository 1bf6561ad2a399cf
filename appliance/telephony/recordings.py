"""Recordings: from Asterisk's MixMonitor spool into the appliance's store.

MixMonitor writes `cv-<call>-<line>-<leg>.wav` into the spool and finalises the WAV header when
the channel is gone. The appliance takes each file once it is complete, moves it out of the
spool, and records its leg, duration and sha256. A sweep at start and after reconnects takes
files whose call ended while nobody was listening, so no recording is left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

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


class RecordingStore:
    def __init__(self, spool: Path, target: Path, db: Database) -> None:
        self.spool = spool
        self.target = target
        self.db = db

    def spool_files(self, call_id: str | None = None) -> list[Path]:
        if not self.spool.is_dir():
            return []
        out = []
        for p in sorted(self.spool.iterdir()):
            m = SPOOL_NAME.match(p.name)
            if m and (call_id is None or m.group("call") == call_id):
                out.append(p)
        return out

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
        dest = self.target / day / f"{call_id}-{line}-{leg}.wav"
        info = await asyncio.to_thread(wav_info, path)
        sha, size = await asyncio.to_thread(_move_with_digest, path, dest)
        row = RecordingRow(
            call_id=call_id,
            line=line,
            leg=leg,
            path=str(dest),
            format="wav/slin8" if info.rate == 8000 else f"wav/{info.rate}",
            duration_s=info.duration_s,
            size_bytes=size,
            sha256=sha,
            flags=flags,
        )
        await self.db.add_recording(row)
        # Only now may the spool copy go: the row and the file both exist.
        await asyncio.to_thread(path.unlink, missing_ok=True)
        log.info("recording %s %s/%s %.1fs %s", call_id, line, leg, info.duration_s, flags or "ok")
        return row


def _move_with_digest(src: Path, dest: Path) -> tuple[str, int]:
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    tmp = dest.with_suffix(".part")
    digest = hashlib.sha256()
    size = 0
    with src.open("rb") as fin, tmp.open("wb") as fout:
        while chunk := fin.read(1 << 16):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    tmp.replace(dest)
    shutil.copystat(src, dest)
    return digest.hexdigest(), size
