"""Hearing a caller's turn the way the dialogue expects it (`DialogueEngine.expecting`).

Measured on the scripted callers (CPU profile: tiny.en; Piper's voice at the call's 8 kHz):

- "when" (a day or a time was asked for): Whisper gets day and time words as its "previous
  text". "Around two in the afternoon" came out "round to an 8 afternoon" without it and
  "Round two in the afternoon" with it; "next Thursday at 11" no longer "next first day at 11".
- "words" (a message in the caller's words): the business's facts sheet as the prompt ("Tell
  him the crown feels loose": 0 of 5 exact without, "Crown"/"crime"; 2 of 3 with).
- "spelling" (the name spelt): `SpellingDecoder`, Whisper constrained to the spelling alphabet.
  On 52 name parts, free decoding then mapping words to letters got 67 % right ("India" →
  "and the", "November November" → one November); the decoder 66 of 66 spelt full names
  (33 names, two renders each). Plain letters are not in its alphabet: B, D, G, P, T and V are
  confused with one another over the phone in most spelt names.
- "name": the plain transcription, heard again as a spelling when it is one.
- anything else, "phone" included: the plain transcription (a digits prompt made Whisper drop
  digits of phone numbers; no prompt helped with names).

The prompts carry no one's data: fixed day and time words, the alphabet, the facts sheet.
A spelling costs one Whisper decoder pass per token (2-4 s on two CPU cores with tiny.en).
"""

from __future__ import annotations

import math
import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer

from appliance.voice.dialogue import spelling
from appliance.voice.dialogue.playbook import PlaybookConfig
from appliance.voice.dialogue.spelling import MODIFIERS, NATO
from appliance.voice.stt import (
    SAMPLE_RATE,
    SHORT_WINDOW_FRAMES,
    SHORT_WINDOW_MAX_S,
    Stt,
    Transcription,
)

WHEN_PROMPT = (
    "Monday, Tuesday, Wednesday, Thursday or Friday, at 10 o'clock or half past two, "
    "in the morning or the afternoon."
)


def prompt_for(expecting: str, playbook: PlaybookConfig) -> str | None:
    """Whisper's prompt for a turn: day and time words when a day or a time is asked for,
    the business's own sheet when the caller leaves a message in their own words (a dental
    clinic's callers speak of crowns and check-ups)."""
    if expecting == "when":
        return WHEN_PROMPT
    if expecting == "words":
        return playbook.sheet_text()
    return None


SPELLING_WORDS: dict[str, tuple[str, ...]] = {
    # canonical word (what spelling.py reads) → how Whisper may write it
    **{
        w.capitalize(): (w.capitalize(), w)
        for w in NATO
        if w not in {"alpha", "juliet", "whisky", "xray", "x-ray"}
    },
    "Alfa": ("Alfa", "alfa", "Alpha", "alpha"),
    "Juliett": ("Juliett", "Juliet", "juliet"),
    "Whiskey": ("Whiskey", "whiskey", "Whisky", "whisky"),
    "X-ray": ("X-ray", "x-ray", "Xray"),
    # The Swedish letters' own words; the English alphabet has none.
    **{w.capitalize(): (w.capitalize(), w) for w in ("åke", "ärlig", "östen")},
    **{m: (m,) for m in MODIFIERS},
}
MIN_MEAN_LOGPROB = -2.0
"""Mean log-probability per token below which the turn was not a spelling (measured on Piper
renders: spelt names -0.3 to -1.8, other words forced into the alphabet -2.1 and below,
mostly below -4)."""
EOT_MIN_LOGPROB = -0.7
"""A spelling ends where Whisper gives the end of text at least this log-probability (or
prefers it to everything): its end-of-text is too willing once the words are constrained, and
a lower bar cut names short."""
ALPHABET_PROMPT = (
    "Alfa Bravo Charlie Delta Echo Foxtrot Golf Hotel India Juliett Kilo Lima Mike November "
    "Oscar Papa Quebec Romeo Sierra Tango Uniform Victor Whiskey X-ray Yankee Zulu."
)
"""Whisper's "previous text" while it hears a spelling. Measured (33 spelt names, two Piper
renders each): 66/66 right with it, 56/66 without; without it Whisper often skipped the first
word ("Sierra Alfa Romeo Alfa" → "Alfa Romeo Alfa") or ended after the first name."""
BEAM = 3
FIRST_BEAM = 8
"""Wider while the first word is read: its first token is where a skipped word is decided."""
FIRST_TOKENS = 3
NEAR_WEIGHT = 0.5
"""Log-probability a first name/surname break loses per letter its parts differ in length
from the name as first heard (Whisper mishears names but mostly gets their lengths)."""


class Transcriber(Protocol):
    def transcribe(
        self,
        audio: npt.NDArray[np.float32],
        language: str | None = "",
        *,
        urgent: bool = True,
        abandoned: threading.Event | None = None,
        initial_prompt: str | None = None,
    ) -> Transcription: ...


def hear(
    stt: Transcriber,
    audio: npt.NDArray[np.float32],
    language: str | None,
    expecting: str,
    *,
    prompt: str | None = None,
    near: str | None = None,
    abandoned: threading.Event | None = None,
    speller: SpellingDecoder | None = None,
) -> Transcription:
    """One turn's words, transcribed for what the engine expects (blocking). `prompt`:
    `prompt_for(expecting, …)`; `near`: the name as heard before it was spelt."""
    if expecting == "spelling" and speller is not None:
        # The plain words first (a fraction of the spelling's cost): forced into the alphabet,
        # a sentence comes out as a "spelling" ("Hi, I would like to book…" → "Alfa Alfa
        # Alfa…", above MIN_MEAN_LOGPROB). Measured on Piper renders: every spelling kept at
        # least one alphabet word in plain transcription (66/66), 47 of 48 sentences none.
        plain = stt.transcribe(audio, language, abandoned=abandoned)
        if plain.text.strip() and _alphabet_words(plain.text) == 0:
            return plain  # an answer, a question, a refusal: the words as they were said
        spelt = speller(audio, near=near, abandoned=abandoned)
        if spelt.text or (abandoned is not None and abandoned.is_set()):
            return spelt
        return plain
    if prompt is not None:
        heard = stt.transcribe(audio, language, abandoned=abandoned, initial_prompt=prompt)
    else:
        heard = stt.transcribe(audio, language, abandoned=abandoned)
    if expecting == "name" and speller is not None and _alphabet_words(heard.text) >= 3:
        # Asked for their name, the caller spelt it: heard again as a spelling.
        spelt = speller(audio, abandoned=abandoned)
        if spelt.text:
            return spelt
    return heard


def _alphabet_words(text: str) -> int:
    """Words of the spelling alphabet, as plain Whisper writes them ("Alpha", "Eko")."""
    words = [w.strip(".,").lower() for w in text.split()]
    return sum(1 for w in words if w in NATO or w in {"eko", "alpha", "juliet"})


_SPELLERS: weakref.WeakKeyDictionary[Stt, SpellingDecoder] = weakref.WeakKeyDictionary()
_SPELLERS_LOCK = threading.Lock()


def speller_for(stt: object) -> SpellingDecoder | None:
    """The spelling decoder of a loaded Whisper (one per model; None for anything else)."""
    if not isinstance(stt, Stt):
        return None
    with _SPELLERS_LOCK:
        if stt not in _SPELLERS:
            _SPELLERS[stt] = SpellingDecoder(stt)
        return _SPELLERS[stt]


def spelling_complete(text: str) -> bool:
    """A spelling turn heard so far spells a first name and a surname: the turn may end
    (callers pause between the two, and the agent must not answer after the first)."""
    name = spelling.spelled_name(text)
    return name is not None and len(name.split()) >= 2


@dataclass
class _Hyp:
    score: float
    tokens: tuple[int, ...]
    words: tuple[str, ...]
    partial: tuple[int, ...]
    """Tokens of a word begun but not finished."""


class SpellingDecoder:
    """Whisper constrained to the spelling alphabet: a beam search over the alphabet's words,
    each step one decoder pass that returns the next token's log-probabilities."""

    def __init__(self, stt: Stt) -> None:
        self.stt = stt
        model: Any = stt.model
        self.whisper = model.model
        self.features = model.feature_extractor
        tok = Tokenizer(model.hf_tokenizer, stt.multilingual, task="transcribe", language="en")
        self.tok = tok
        self.start = [*tok.sot_sequence, tok.no_timestamps]
        self.search_start = [tok.sot_prev, *tok.encode(" " + ALPHABET_PROMPT), *self.start]
        self.comma = tok.encode(",")[0]
        self.dot = tok.encode(".")[0]
        self.eot = tok.eot
        # Timestamps and other special tokens: never in a spelling.
        self.suppress = list(range(tok.eot + 1, model.hf_tokenizer.get_vocab_size()))
        self.words: dict[tuple[int, ...], str] = {}
        for canonical, forms in SPELLING_WORDS.items():
            for form in forms:
                self.words[tuple(tok.encode(" " + form))] = canonical
        self.prefixes: dict[tuple[int, ...], set[int]] = {}
        for seq in self.words:
            for i in range(len(seq)):
                self.prefixes.setdefault(seq[:i], set()).add(seq[i])

    def __call__(
        self,
        audio: npt.NDArray[np.float32],
        *,
        parts: int = 2,
        near: str | None = None,
        abandoned: threading.Event | None = None,
    ) -> Transcription:
        """The spelling in `audio` as canonical words ("Alfa November November Alfa. Bravo
        Echo Romeo Golf."), or no text if it does not sound like one. `parts`: 2 for a first
        name and a surname, 1 for one word; `near`: the name as heard, for where it breaks."""
        seconds = len(audio) / SAMPLE_RATE
        with self.stt.gate(urgent=True, threads=self.stt.threads):
            if abandoned is not None and abandoned.is_set():
                return Transcription("", "en", seconds)
            frames = SHORT_WINDOW_FRAMES if seconds <= SHORT_WINDOW_MAX_S else 3000
            mel = pad_or_trim(self.features(audio), frames)
            encoded = self.whisper.encode(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], np.float32))
            )
            budget = int(8 + 4 * seconds)  # a spelling word is ~0.45 s and one or two tokens
            best = self._search(encoded, max_tokens=budget)
            if best is None or best.score / max(1, len(best.tokens)) < MIN_MEAN_LOGPROB:
                return Transcription("", "en", seconds)
            cut = self._breaks(encoded, best.words, parts, near)
        return Transcription(_render(best.words, cut), "en", seconds)

    # ---- the search
    def _next_logprobs(self, encoded: Any, prefixes: list[tuple[int, ...]]) -> list[Any]:
        """For each prefix, the log-probabilities of the token after it (None: Whisper's most
        likely next token is the end of text, and it stopped there)."""
        batch = encoded
        if len(prefixes) > 1:
            batch = ctranslate2.StorageView.from_array(
                np.ascontiguousarray(np.repeat(np.asarray(encoded), len(prefixes), 0))
            )
        prompts = [[*self.search_start, *p] for p in prefixes]
        longest = max(len(p) for p in prompts)
        # ctranslate2 returns at most max_length // 2 tokens here: room for the prefix and one.
        results = self.whisper.generate(
            batch, prompts, beam_size=1, max_length=2 * (longest + 2),
            return_logits_vocab=True, suppress_tokens=self.suppress, suppress_blank=False,
        )  # fmt: skip
        out: list[Any] = []
        for prefix, result in zip(prefixes, results, strict=True):
            steps = result.logits[0]
            if len(prefix) >= len(steps):
                out.append(None)
                continue
            logits = np.asarray(steps[len(prefix)], dtype=np.float64).reshape(-1)
            out.append(logits - np.logaddexp.reduce(logits))
        return out

    def _search(self, encoded: Any, *, max_tokens: int) -> _Hyp | None:
        beams = [_Hyp(0.0, (), (), ())]
        finished: _Hyp | None = None
        fallback: _Hyp | None = None
        while beams:
            candidates: list[_Hyp] = []
            for hyp, lp in zip(
                beams, self._next_logprobs(encoded, [h.tokens for h in beams]), strict=True
            ):
                at_boundary = not hyp.partial and bool(hyp.words)
                if lp is None:
                    # Whisper would end here: a finished spelling if a word just ended.
                    if at_boundary and (finished is None or hyp.score > finished.score):
                        finished = hyp
                    continue
                if at_boundary:
                    end = _Hyp(hyp.score + float(lp[self.eot]), hyp.tokens, hyp.words, ())
                    if fallback is None or end.score > fallback.score:
                        fallback = end
                    better = finished is None or end.score > finished.score
                    if lp[self.eot] > EOT_MIN_LOGPROB and better:
                        finished = end
                candidates += self._extend(hyp, lp, at_boundary)
            candidates.sort(key=lambda h: -h.score)
            width = FIRST_BEAM if len(beams[0].tokens) < FIRST_TOKENS else BEAM
            beams = [h for h in candidates[:width] if len(h.tokens) < max_tokens]
            # Scores only fall: a beam behind the best finished spelling cannot catch up.
            if finished is not None and (not beams or beams[0].score < finished.score):
                break
        return finished or fallback

    def _extend(self, hyp: _Hyp, lp: Any, at_boundary: bool) -> list[_Hyp]:
        out: list[_Hyp] = []
        after_punct = bool(hyp.tokens) and hyp.tokens[-1] in (self.comma, self.dot)
        if at_boundary and not after_punct:
            for punct in (self.comma, self.dot):
                out.append(_Hyp(hyp.score + float(lp[punct]), (*hyp.tokens, punct), hyp.words, ()))
        for token in self.prefixes.get(hyp.partial, ()):
            seq = (*hyp.partial, token)
            score = hyp.score + float(lp[token])
            tokens = (*hyp.tokens, token)
            word = self.words.get(seq)
            if word is not None and not (word in MODIFIERS and not hyp.words):
                out.append(_Hyp(score, tokens, (*hyp.words, word), ()))
            if seq in self.prefixes:
                out.append(_Hyp(score, tokens, hyp.words, seq))
        return out

    # ---- first name | surname
    def _breaks(
        self, encoded: Any, words: tuple[str, ...], parts: int, near: str | None = None
    ) -> set[int]:
        """The index of the word that starts the surname (parts 2; none for parts 1): where
        the caller's pause is. Two readings of Whisper's, added: how likely a full stop is
        there in the words read without one, and how likely the whole spelling is with the
        stop there. Measured on 99 renders of the scripted names, each alone put 4 breaks
        wrong, the two together 3; the name as first heard (`near`) settles most of the rest.
        No break right after "Oscar with dots", which sounds like the end of a phrase (and no
        first name ends in Ö)."""
        if parts < 2:
            return set()
        letters = [0 if w in MODIFIERS else 1 for w in words]
        allowed = [
            i for i in range(1, len(words))
            if words[i] not in MODIFIERS and words[i - 1] not in MODIFIERS
            and sum(letters[:i]) >= 2 and sum(letters[i:]) >= 2
        ]  # fmt: skip
        if len(allowed) <= 1:
            return set(allowed)
        pieces = [self.tok.encode(" " + w) for w in words]
        plain = [t for piece in pieces for t in piece]
        starts = [sum(len(p) for p in pieces[:i]) for i in range(len(words))]
        texts = [plain] + [[*plain[: starts[i]], self.dot, *plain[starts[i] :]] for i in allowed]
        passes = self._passes(encoded, texts)
        heard = [len(w) for w in re.findall(r"[^\W\d_]+", near or "")]

        def score(k: int) -> float:
            i = allowed[k]
            dotted = passes[k + 1]
            value = float(passes[0][1][starts[i]]) + dotted[0]  # the stop, then the whole
            if len(heard) == 2:
                first, last = sum(letters[:i]), sum(letters[i:])
                value -= NEAR_WEIGHT * (abs(first - heard[0]) + abs(last - heard[1]))
            return value

        return {allowed[max(range(len(allowed)), key=score)]}

    def _passes(self, encoded: Any, texts: list[list[int]]) -> list[tuple[float, Any]]:
        """For each text (tokens), in one batched pass: its log-probability under Whisper and
        the log-probability of a full stop at each of its positions."""
        batch = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(np.repeat(np.asarray(encoded), len(texts), 0))
        )
        prompts = [[*self.start, *text] for text in texts]
        results = self.whisper.generate(
            batch, prompts, beam_size=1, max_length=2 * (max(map(len, prompts)) + 2),
            return_logits_vocab=True, suppress_tokens=self.suppress, suppress_blank=False,
        )  # fmt: skip
        out: list[tuple[float, Any]] = []
        for text, result in zip(texts, results, strict=True):
            steps = result.logits[0]
            if len(steps) < len(text):
                out.append((-math.inf, np.full(len(text), -math.inf)))
                continue
            rows = np.stack(
                [np.asarray(steps[i], np.float64).reshape(-1) for i in range(len(text))]
            )
            norm = np.logaddexp.reduce(rows, axis=1)
            total = float(np.sum(rows[np.arange(len(text)), text] - norm))
            out.append((total, rows[:, self.dot] - norm))
        return out


def _render(words: tuple[str, ...], breaks: set[int]) -> str:
    out = ""
    for i, word in enumerate(words):
        out += (". " if i in breaks else " " if i else "") + word
    return out + "."
