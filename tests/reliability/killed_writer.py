"""A stand-in appliance for the SIGKILL test: writes calls as the telephony service does (CDR
through the privacy layer, MixMonitor-style plaintext in the spool, then encryption into the
recordings dir and its row) and acknowledges each committed step on stdout, until killed.

    python -m tests.reliability.killed_writer STATE_DIR [STALL_AT]

With STALL_AT, call number STALL_AT stops after its CDR with its plaintext in the spool (the
kill then lands at a known point: leftover audio the restart must take).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from appliance.privacy import Privacy
from appliance.store import Database
from appliance.telephony.recordings import RecordingStore
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import distinctive_wav
from tests.store.test_db import CDR

WAV = distinctive_wav(2.0)


async def main(base: Path, stall_at: int) -> None:
    cfg = make_cfg(base)
    spool = base / "spool"
    spool.mkdir(exist_ok=True)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        store = RecordingStore(spool, cfg.recordings_dir, db, privacy)
        i = 0
        print("ready", flush=True)
        while True:
            i += 1
            call_id = f"{1700000000 + i}.{i}"
            # MixMonitor writes the file while the call is up; the CDR comes at hangup.
            tmp = spool / f".{call_id}.tmp"
            tmp.write_bytes(WAV)
            tmp.rename(spool / f"cv-{call_id}-reception-mixed.wav")
            cdr = replace(
                CDR, call_id=call_id, uniqueid=call_id, calling_number=f"+4670555{i % 10000:04d}",
                start_at=1700000000.0 + i, end_at=1700000010.0 + i,
            )  # fmt: skip
            await privacy.subjects.add_cdr(cdr)
            print(f"cdr {call_id}", flush=True)
            if i == stall_at:  # hold the plaintext in the spool until the kill lands
                print("stalled", flush=True)
                await asyncio.sleep(3600)
            await store.ingest_call(call_id)
            print(f"rec {call_id}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else -1))
