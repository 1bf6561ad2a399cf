"""The scripted callers (callers/*.json) against the dialogue engine, text turns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_cpp import Llama

from appliance.models.commands import active_profile
from appliance.models.manifest import load_manifest
from appliance.models.store import ModelStore
from appliance.voice.dialogue.extract import LlamaIntent
from tests.voice.dialogue.runner import dev_config, load_callers, playbook, run_text, scripted

CALLERS = load_callers()
CATEGORIES = {
    "booking-relative", "booking-absolute", "booking-calendar", "booking-question",
    "change-of-mind", "cancel", "message", "question-in-sheet", "question-not-in-sheet", "human",
    "opt-out", "silence", "mumbling", "noise", "off-topic", "angry",
}  # fmt: skip


def test_the_set_covers_every_kind_of_caller() -> None:
    assert len(CALLERS) >= 40
    kinds = Counter(c.category for c in CALLERS)
    assert set(kinds) == CATEGORIES, kinds
    assert len({c.id for c in CALLERS}) == len(CALLERS)
    expects = Counter((c.expect["transfer"], c.expect["dnc"]) for c in CALLERS)
    assert expects[(True, False)] >= 5 and expects[(False, True)] >= 3


@pytest.mark.parametrize("caller", CALLERS, ids=[c.id for c in CALLERS])
async def test_scripted_caller(caller) -> None:  # type: ignore[no-untyped-def]
    result = await run_text(caller, scripted(playbook()))
    transcript = "\n".join(
        f"  {who}: {what}"
        for pair in zip([None, *result.heard], result.agent, strict=False)
        for who, what in (("caller", pair[0]), ("agent", pair[1]))
    )
    assert result.ok, f"{caller.id}: {result.problems}\n{transcript}"
    assert result.invented == [], f"{caller.id}: invented {result.invented}\n{transcript}"


# ---- with the real CPU model answering the intent question the rules cannot
@pytest.fixture(scope="module")
def intent_model() -> Iterator[LlamaIntent]:
    # `make test` installs the models first: a missing one fails here, it never skips.
    cfg = dev_config()
    manifest = load_manifest()
    entry = manifest.profile(active_profile(cfg, manifest))["llm"]
    gguf = next(f.name for f in entry.files if f.name.endswith(".gguf"))
    path: Path = ModelStore(cfg.models.dir, manifest).file(entry.name, gguf)
    llama = Llama(model_path=str(path), n_ctx=512, n_threads=2, verbose=False)
    yield LlamaIntent(llama)
    llama.close()


UNCLEAR = [c for c in CALLERS if c.category in {"mumbling", "noise"}]


@pytest.mark.parametrize("caller", UNCLEAR, ids=[c.id for c in UNCLEAR])
async def test_unclear_callers_with_the_real_model(caller, intent_model: LlamaIntent) -> None:  # type: ignore[no-untyped-def]
    """Whatever the 135M model guesses for noise, the outcome is the scripted one: a guess is
    asked back and counts as a failed attempt."""
    result = await run_text(caller, scripted(playbook()), intents=intent_model)
    assert result.ok, (caller.id, result.problems, result.agent)
    assert result.invented == []


def test_the_model_can_only_answer_with_an_intent(intent_model: LlamaIntent) -> None:
    options = ("book", "cancel", "message", "question")
    for text in ("I was hoping to pop by some time next week", "blah blah"):
        assert intent_model.classify(text, options) in (*options, None)
