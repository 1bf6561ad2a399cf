"""Post-call transcripts at rest: the data model, sealing, the keyed search index, audited reads.

A transcript (one recorded leg: segments with word timings, the language) is stored as one
JSON document sealed with AES-256-GCM under a key derived — like the recording's file key —
from the data keys of the call's subjects, bound to `transcript:<call>:<line>:<leg>`. Erasing
any of those subjects shreds it.

Search without plaintext: every word is normalised and HMAC'd under the keyring's 'search'
key; the FTS5 index holds those tokens per segment. A query's words are hashed the same way,
so `search("appointment tuesday")` finds the segments while the database file holds no word
of any transcript. (Equal words give equal tokens: someone with the file but not the key sees
how often a token occurs, not which word it is; the box itself can test guesses — it holds
the key and the transcripts anyway.)

Nothing here loads a model: faster-whisper lives in appliance.voice.transcribe.
"""

from __future__ import annotations

import json
import os
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from appliance.errors import CallvaultError
from appliance.privacy import Actor, Privacy, crypto
from appliance.store import Database
from appliance.store.transcripts import IndexedSegment, TranscriptRow

FORMAT = b"CVT1"
SALT_BYTES = 32
TOKEN_BYTES = 12
"""96-bit tokens: collisions between distinct words are negligible at any vocabulary size."""
FORMAT_VERSION = 1


class TranscriptError(CallvaultError):
    pass


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    prob: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    call_id: str
    line: str
    leg: str
    """The speaker: each leg is one side of the call (`mixed` only when no separate legs)."""
    language: str
    language_prob: float
    model: str
    duration_s: float
    segments: tuple[Segment, ...]
    id: int = 0
    created_at: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    def doc(self) -> dict[str, Any]:
        """The JSON document: what is sealed at rest and what an access export shows."""
        return {
            "version": FORMAT_VERSION,
            "call_id": self.call_id,
            "line": self.line,
            "leg": self.leg,
            "speaker": self.leg,
            "language": self.language,
            "language_prob": self.language_prob,
            "model": self.model,
            "duration_s": self.duration_s,
            "segments": [
                {
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "words": [asdict(w) for w in s.words],
                }
                for s in self.segments
            ],
        }

    @classmethod
    def from_doc(
        cls, doc: Mapping[str, Any], *, id: int = 0, created_at: float = 0.0
    ) -> Transcript:
        segments = tuple(
            Segment(
                start=float(s["start"]),
                end=float(s["end"]),
                text=str(s["text"]),
                words=tuple(
                    Word(float(w["start"]), float(w["end"]), str(w["word"]), float(w["prob"]))
                    for w in s["words"]
                ),
            )
            for s in doc["segments"]
        )
        return cls(
            call_id=str(doc["call_id"]),
            line=str(doc["line"]),
            leg=str(doc["leg"]),
            language=str(doc["language"]),
            language_prob=float(doc["language_prob"]),
            model=str(doc["model"]),
            duration_s=float(doc["duration_s"]),
            segments=segments,
            id=id,
            created_at=created_at,
        )


@dataclass(frozen=True)
class Hit:
    transcript_id: int
    call_id: str
    line: str
    leg: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class CallMatch:
    """A call in which every searched word was said (on any of its legs), and where."""

    call_id: str
    hits: tuple[Hit, ...]


def words_of(text: str) -> list[str]:
    """Search words: NFKC, case-folded, apostrophes dropped, split at anything not a letter or
    digit — the same for the indexed transcript and the query, so "Tuesday," finds "tuesday"."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = folded.replace("'", "").replace("\u2019", "")
    cleaned = "".join(c if c.isalnum() else " " for c in folded)
    return cleaned.split()


def context(call_id: str, line: str, leg: str) -> str:
    """What a transcript's key and seal are bound to: a blob moved to another row won't open."""
    return f"transcript:{call_id}:{line}:{leg}"


class TranscriptVault:
    def __init__(self, db: Database, privacy: Privacy) -> None:
        self.db = db
        self.privacy = privacy

    # ---- keyed tokens
    async def tokens(self, words: Iterable[str]) -> list[str]:
        key = await self.privacy.keyring.system_key("search")
        return [
            crypto.keyed_hash(key, b"callvault search|" + w.encode())[:TOKEN_BYTES].hex()
            for w in words
        ]

    # ---- sealing
    async def seal(self, t: Transcript, subject_ids: Sequence[int]) -> bytes:
        salt = os.urandom(SALT_BYTES)
        ctx = context(t.call_id, t.line, t.leg)
        key = await self.privacy.keyring.file_key(subject_ids, salt, ctx)
        body = json.dumps(t.doc(), ensure_ascii=False, separators=(",", ":")).encode()
        return FORMAT + salt + crypto.seal(key, body, ctx.encode())

    async def open_row(self, row: Mapping[str, Any]) -> Transcript:
        """Decrypt a stored row (not audited: callers audit the read they make)."""
        blob = bytes(row["text_enc"])
        what = f"transcript {row['id']}"
        if blob[: len(FORMAT)] != FORMAT:
            raise TranscriptError(f"{what}: unknown storage format")
        salt = blob[len(FORMAT) : len(FORMAT) + SALT_BYTES]
        ctx = context(str(row["call_id"]), str(row["line"]), str(row["leg"]))
        subjects = [int(s) for s in str(row["key_subjects"]).split(",") if s]
        key = await self.privacy.keyring.file_key(subjects, salt, ctx)
        plain = crypto.open_sealed(key, blob[len(FORMAT) + SALT_BYTES :], ctx.encode(), what)
        return Transcript.from_doc(
            json.loads(plain), id=int(row["id"]), created_at=float(row["created_at"])
        )

    # ---- storing
    async def store(
        self, t: Transcript, *, recording_id: int | None, subject_ids: Sequence[int], actor: Actor
    ) -> tuple[int, bool]:
        """Seal and index a transcript, audited as `transcript.create`; (id, newly stored)."""
        if not subject_ids:
            raise TranscriptError(f"transcript of call {t.call_id}: no subject keys to seal under")
        now = time.time()
        row = TranscriptRow(
            call_id=t.call_id,
            recording_id=recording_id,
            line=t.line,
            leg=t.leg,
            language=t.language,
            language_prob=round(t.language_prob, 4),
            model=t.model,
            created_at=now,
            duration_s=round(t.duration_s, 3),
            text_enc=await self.seal(t, subject_ids),
            key_subjects=",".join(str(s) for s in subject_ids),
        )
        segments = [
            IndexedSegment(s.start, s.end, await self.tokens(words_of(s.text))) for s in t.segments
        ]
        audit = await self.privacy.audit.entry(
            actor,
            "transcript.create",
            "transcript",
            "post-call transcription",
            f"call={t.call_id} leg={t.leg} segments={len(segments)}",
        )
        return await self.db.add_transcript(row, segments, audit)

    # ---- audited reads
    async def read_rows(
        self, rows: Sequence[Mapping[str, Any]], *, actor: Actor, purpose: str, action: str
    ) -> list[Transcript]:
        out = []
        for row in rows:
            # Audited before it is opened, like a recording read.
            await self.privacy.audit.record(actor, action, f"transcript:{row['id']}", purpose)
            out.append(await self.open_row(row))
        return out

    async def read(
        self, call_id: str, *, actor: Actor, purpose: str, action: str = "transcript.view"
    ) -> list[Transcript]:
        """A call's transcripts, one per leg; every transcript read is audited."""
        if not purpose.strip():
            raise TranscriptError("reading a transcript needs a purpose (it is audited)")
        rows = await self.db.transcripts(call_id)
        return await self.read_rows(rows, actor=actor, purpose=purpose, action=action)

    async def search_tokens(self, query: str, *, actor: Actor, purpose: str) -> list[str]:
        """The keyed index tokens of `query`'s words, for a store query that pages calls
        (the admin call list). Audited as `transcript.search`, like `search`, with the number
        of words only: the words are not logged."""
        words = list(dict.fromkeys(words_of(query)))
        if not words:
            raise TranscriptError(f"nothing to search for in {query!r}: no words")
        tokens = await self.tokens(words)
        await self.privacy.audit.record(
            actor, "transcript.search", "transcripts", purpose, f"words={len(words)} paged"
        )
        return tokens

    async def search(self, query: str, *, actor: Actor, purpose: str) -> list[CallMatch]:
        """Calls in which every word of `query` was said, newest first, with where each was.

        Audited as `transcript.search` with counts only: the words searched are not logged.
        """
        words = list(dict.fromkeys(words_of(query)))
        if not words:
            raise TranscriptError(f"nothing to search for in {query!r}: no words")
        per_word = [await self.db.search_token(tok) for tok in await self.tokens(words)]
        calls = set.intersection(*({str(h["call_id"]) for h in hits} for hits in per_word))
        # One pass over the hits, grouped by call: a frequent word must not cost calls x hits.
        by_call: dict[str, dict[int, Hit]] = {c: {} for c in calls}
        for hits in per_word:
            for h in hits:
                found = by_call.get(str(h["call_id"]))
                if found is not None:
                    found[int(h["segment_id"])] = Hit(
                        transcript_id=int(h["transcript_id"]),
                        call_id=str(h["call_id"]),
                        line=str(h["line"]),
                        leg=str(h["leg"]),
                        start_s=float(h["start_s"]),
                        end_s=float(h["end_s"]),
                    )
        matches = [
            CallMatch(call_id, tuple(sorted(by_call[call_id].values(), key=_hit_order)))
            for call_id in sorted(calls, reverse=True)
        ]
        await self.privacy.audit.record(
            actor,
            "transcript.search",
            "transcripts",
            purpose,
            f"words={len(words)} calls={len(matches)}",
        )
        return matches


def _hit_order(h: Hit) -> tuple[str, float]:
    return (h.leg, h.start_s)
