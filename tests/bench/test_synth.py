"""The synthetic store generator (bench/synth.py): small N, checked through the real API."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

import phonenumbers
import pytest

from appliance.privacy import Actor, Identifier, Privacy
from appliance.store import Database, StoreError
from appliance.telephony.recordings import RecordingStore, wav_info_of
from bench import synth

SPEC = synth.Spec(calls=2000, seed=7, recorded_share=0.5)
OP = Actor("test", "privacy-officer")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.Summary]:
    import asyncio

    state = tmp_path_factory.mktemp("synth")
    return state, asyncio.run(synth.generate(SPEC, state))


async def test_counts_match_the_store_and_the_spec(
    generated: tuple[Path, synth.Summary],
) -> None:
    state, summary = generated
    cfg = synth.synth_config(state)
    async with Database(cfg.database) as db:
        counts = await db.table_counts(summary.counts)
        assert counts == summary.counts
        calls = await db.calls(limit=10_000)
        consent_calls = [
            c
            for c in calls
            if c.line == "consent" and c.direction == "inbound" and c.answered_at is not None
        ]
    assert counts["calls"] == SPEC.calls == len(calls)
    # One CDR per call, a second one for the calls the agent transferred (a few percent).
    assert SPEC.calls < counts["cdrs"] < SPEC.calls * 1.15
    assert counts["consents"] == len(consent_calls) > 0
    assert counts["recordings"] > 10
    # Distinct external numbers: about N/20, of which most call at least once.
    assert 0.8 * SPEC.numbers <= counts["subjects"] <= SPEC.numbers + 50
    assert min(c.started_at for c in calls) >= summary.end_at - SPEC.span_days * synth.DAY
    assert max(c.ended_at or 0 for c in calls) <= summary.end_at
    assert {c.direction for c in calls} == {"inbound", "outbound", "internal"}
    assert {c.disposition for c in calls} == {"ANSWERED", "NO ANSWER", "BUSY"}


async def test_every_link_is_the_one_the_appliance_would_make_and_lookups_find_it(
    generated: tuple[Path, synth.Summary],
) -> None:
    state, _ = generated
    cfg = synth.synth_config(state)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        subjects = privacy.subjects
        # From the raw CDR numbers through the appliance's own normalisation.
        expected: dict[Identifier, set[tuple[str, str]]] = defaultdict(set)
        for call in await db.calls(limit=10_000):
            for cdr in await db.cdrs(call.id):
                for raw, role in (
                    (cdr["calling_number"], "caller"),
                    (cdr["dialed_number"], "callee"),
                ):
                    ident = subjects.from_caller_id(str(raw))
                    if ident is not None:
                        expected[ident].add((call.id, role))
        kinds = {i.kind for i in expected}
        assert kinds == {"phone", "extension"}
        for ident, links in expected.items():
            items = await subjects.items(ident)
            found = {(i["item_id"], i["role"]) for i in items if i["item_type"] == "call"}
            assert found == links, ident
        # Every phone subject is someone's number, and an operator's lookup by the national
        # form finds the same subject as the E.164 one.
        phones = await db.subject_activity("phone")
        assert len(phones) == sum(1 for i in expected if i.kind == "phone")
        swedish = next(i for i in expected if i.kind == "phone" and i.value.startswith("+46"))
        national = "0" + swedish.value[3:]
        assert await subjects.items(subjects.parse(national)) == await subjects.items(swedish)


async def test_sealed_values_open_to_valid_numbers_of_several_countries(
    generated: tuple[Path, synth.Summary],
) -> None:
    state, _ = generated
    cfg = synth.synth_config(state)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        regions = set()
        for sid, sealed, calls, _ in await db.subject_activity("phone"):
            value = await privacy.keyring.subject_value(sid, sealed)
            number = phonenumbers.parse(value, None)
            assert phonenumbers.is_valid_number(number), value
            regions.add(phonenumbers.region_code_for_number(number))
            # The blind index in the row is the one the key ring computes for that number.
            row = await db.subject_by_index(
                await privacy.keyring.blind_index(Identifier("phone", value))
            )
            assert row is not None and row["id"] == sid
            assert calls >= 1
    assert "SE" in regions and len(regions) >= 4


async def test_recordings_decrypt_to_what_their_rows_say(
    generated: tuple[Path, synth.Summary],
) -> None:
    state, summary = generated
    cfg = synth.synth_config(state)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        store = RecordingStore(Path(), cfg.recordings_dir, db, privacy)
        rows = await db.recordings()
        assert len(rows) == summary.counts["recordings"]
        for row in rows[:12]:
            assert row["created_at"] >= summary.end_at - SPEC.recording_days * synth.DAY
            plain = b"".join([c async for c in store.open_recording(row, actor=OP, purpose="test")])
            assert hashlib.sha256(plain).hexdigest() == row["sha256"]
            assert len(plain) == row["size_bytes"]
            info = wav_info_of(plain[:44], len(plain))
            assert info.complete and info.rate == 8000
            assert info.duration_s == pytest.approx(row["duration_s"], abs=0.01)
            # Linked to the subjects whose keys it is encrypted under.
            for sid in str(row["key_subjects"]).split(","):
                key = await db.subject_key(int(sid))
                assert key is not None
                linked = await db.subject_items(key[0])
                assert ("recording", str(row["id"])) in {
                    (i["item_type"], i["item_id"]) for i in linked
                }


async def test_same_seed_same_calls(tmp_path: Path, generated: tuple[Path, synth.Summary]) -> None:
    state, summary = generated
    again = await synth.generate(SPEC, tmp_path / "again")
    assert again.counts == summary.counts
    async with (
        Database(synth.synth_config(state).database) as a,
        Database(synth.synth_config(tmp_path / "again").database) as b,
    ):
        assert await a.calls(limit=10_000) == await b.calls(limit=10_000)


async def test_generate_refuses_a_state_dir_with_a_database(
    generated: tuple[Path, synth.Summary],
) -> None:
    state, _ = generated
    with pytest.raises(FileExistsError, match="empty state directory"):
        await synth.generate(SPEC, state)


def test_cache_generates_once_and_copies_share_the_recordings(tmp_path: Path) -> None:
    spec = synth.Spec(calls=300, seed=3, recorded_share=1.0)
    first = synth.cached(spec, root=tmp_path)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert synth.cached(spec, root=tmp_path) == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if ".part-" in p.name]
    cfg = synth.working_copy(first, tmp_path / "copy")
    assert cfg.database == tmp_path / "copy" / "callvault.db"
    originals = sorted((first / "recordings").rglob("*.cvae"))
    copies = sorted(cfg.recordings_dir.rglob("*.cvae"))
    assert originals and len(copies) == len(originals)
    assert os.stat(copies[0]).st_ino == os.stat(originals[0]).st_ino
    assert ((cfg.state_dir / "keys" / "master.key").stat().st_mode & 0o777) == 0o600


async def test_bulk_loading_is_only_for_an_empty_database(
    generated: tuple[Path, synth.Summary],
) -> None:
    state, _ = generated
    async with Database(synth.synth_config(state).database) as db:
        with pytest.raises(StoreError, match="empty database"):
            await db.bulk_load_begin()
        with pytest.raises(StoreError, match="cannot load"):
            await db.bulk_insert({"audit_log": [(1,)]})
        with pytest.raises(StoreError, match="expected 7"):
            await db.bulk_insert({"subjects": [(1, "phone")]})
        with pytest.raises(StoreError, match="cannot count"):
            await db.table_counts(["sqlite_master"])
