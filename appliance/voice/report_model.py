"""The LLM side of the post-call report: the prompt and grammar-constrained generation.

The report model is its own llama.cpp instance, not the live agent's (`appliance.voice.llm`):
a report written while calls are running must not hold the agent's lock, and it runs on one
thread so live turns keep the other core. Generation is constrained by a GBNF grammar that
llama-cpp-python builds from the generation schema (`LlamaGrammar.from_json_schema`), so the
output is JSON of the report's shape by construction; what the grammar cannot express is
checked afterwards (report_ground, jsonschema).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from appliance.config import Config
from appliance.models.manifest import ModelError

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
MAX_PROMPT_CHARS = 6000
"""Transcript text given to the model (≈1500 tokens); longer calls keep their start and end."""

SYSTEM = (
    "You write a short JSON report of a phone call to a business. Use only what was said in "
    "the call. Write null for anything the call does not say."
)
# One worked example teaches the fields' meaning better than a description: the grammar only
# admits words of the real transcript in free text, so the example's words cannot leak in.
EXAMPLE_TRANSCRIPT = (
    "Agent: Good morning, Smith Plumbing.\n"
    "Caller: Hello, my kitchen sink is leaking. Can someone come on Friday afternoon? "
    "This is Tom Lee.\n"
    "Agent: Yes, a plumber will call you back to confirm."
)
EXAMPLE_REPORT = {
    "purpose": "appointment",
    "caller_name": "Tom Lee",
    "contact": {"phone": None, "email": None},
    "need": "my kitchen sink is leaking",
    "appointment": {"day": "Friday", "date": None, "time": "afternoon"},
    "follow_up": "a plumber will call back to confirm",
    "opt_out": False,
    "language": "en",
}


class ReportModel(Protocol):
    """What the report writer needs from a model: JSON text for a prompt and a schema."""

    name: str

    def generate(
        self,
        messages: Messages,
        schema: dict[str, Any],
        *,
        temperature: float,
        seed: int,
        max_tokens: int,
    ) -> str: ...


class LlamaReportModel:
    def __init__(
        self, path: Path, *, name: str, gpu: bool = False, threads: int = 1, n_ctx: int = 4096
    ) -> None:
        from llama_cpp import Llama

        self.name = name
        self.path = path
        try:
            self._llm = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_gpu_layers=-1 if gpu else 0,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"report model {name} ({path}) does not load: {exc}") from exc
        self._lock = threading.Lock()

    def generate(
        self,
        messages: Messages,
        schema: dict[str, Any],
        *,
        temperature: float,
        seed: int,
        max_tokens: int,
    ) -> str:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        try:
            grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except (AssertionError, ValueError, KeyError, RecursionError) as exc:
            # A schema feature the converter lacks: any JSON, the validation decides.
            log.warning("report schema not expressible as a grammar (%s): plain JSON", exc)
            grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        with self._lock:
            out: Any = self._llm.create_chat_completion(
                messages=cast(Any, messages),
                grammar=grammar,
                temperature=temperature,
                seed=seed,
                max_tokens=max_tokens,
            )
        return str(out["choices"][0]["message"]["content"] or "")


def load_report_model(cfg: Config, *, threads: int = 1) -> LlamaReportModel:
    """The active profile's LLM, loaded for reports; ModelError says what is missing."""
    from appliance.models.commands import active_profile
    from appliance.models.devices import detect
    from appliance.models.manifest import load_manifest
    from appliance.models.store import ModelStore

    manifest = load_manifest()
    entry = manifest.profile(active_profile(cfg, manifest))["llm"]
    store = ModelStore(cfg.models.dir, manifest)
    status = store.quick_status(entry)
    if not status.installed:
        raise ModelError(
            f"model {entry.name} (llm) is unusable: {status.problem} "
            "(run `callvault models install`)"
        )
    gguf = next(f.name for f in entry.files if f.name.endswith(".gguf"))
    return LlamaReportModel(
        store.file(entry.name, gguf),
        name=entry.name,
        gpu=detect().for_engine("gguf") == "cuda",
        threads=threads,
    )


_LABELS = {"caller": "Caller", "callee": "Agent", "agent": "Agent"}


def transcript_text(turns: Sequence[tuple[str, str]]) -> str:
    """`Caller: …` / `Agent: …` lines; a long call keeps its first and last parts."""
    text = "\n".join(f"{_LABELS.get(who, 'Speaker')}: {what.strip()}" for who, what in turns)
    if len(text) <= MAX_PROMPT_CHARS:
        return text
    half = MAX_PROMPT_CHARS // 2
    return text[:half].rsplit("\n", 1)[0] + "\n[…]\n" + text[-half:].split("\n", 1)[-1]


def messages(
    turns: Sequence[tuple[str, str]], schema: dict[str, Any], *, example: bool
) -> Messages:
    """The extraction prompt. `example`: the line uses the default schema the example fits;
    otherwise the fields' descriptions are listed instead."""
    out: Messages = [{"role": "system", "content": SYSTEM}]
    if example:
        out += [
            {"role": "user", "content": f"Transcript:\n{EXAMPLE_TRANSCRIPT}"},
            {"role": "assistant", "content": json.dumps(EXAMPLE_REPORT)},
            {"role": "user", "content": f"Transcript:\n{transcript_text(turns)}"},
        ]
        return out
    fields = "\n".join(
        f"- {name}: {prop.get('description', '')}".rstrip(": ")
        for name, prop in dict(schema.get("properties", {})).items()
        if isinstance(prop, dict)
    )
    out.append(
        {
            "role": "user",
            "content": f"Transcript:\n{transcript_text(turns)}\n\nReport fields:\n{fields}",
        }
    )
    return out
