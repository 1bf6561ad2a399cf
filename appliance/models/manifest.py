"""The model manifest (models/manifest.toml): what each model is, where its bytes come from."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import CallvaultError

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "models" / "manifest.toml"
ROLES = ("stt", "llm", "tts", "vad")
PROFILE_SLOTS = ("stt_live", "stt_batch", "llm", "tts", "vad")
OPTIONAL_SLOTS = ("stt_live_multi",)
"""`stt_live_multi`: the multilingual Whisper that live lines in another language than English
(or `auto`) hear with, when `stt_live` is English-only."""
MULTILINGUAL = "multi"


class ModelError(CallvaultError):
    pass


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    sha256: str
    parts: tuple[tuple[str, str], ...]
    """(import package, path inside it) in the order they are joined."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: str
    language: str
    format: str
    licence: str
    devices: tuple[str, ...]
    packages: tuple[str, ...]
    files: tuple[ModelFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Manifest:
    models: dict[str, ModelEntry]
    profiles: dict[str, dict[str, str]]

    def model(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise ModelError(f"no model {name!r} in the manifest") from None

    def voice_for(self, language: str) -> ModelEntry | None:
        """The manifest's voice (TTS model) for an ISO 639-1 language; one per language."""
        return next(
            (e for e in self.models.values() if e.role == "tts" and e.language == language),
            None,
        )

    def profile(self, name: str) -> dict[str, ModelEntry]:
        try:
            slots = self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles))
            raise ModelError(f"no model profile {name!r} (known: {known})") from None
        return {slot: self.model(model) for slot, model in slots.items()}


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"cannot read model manifest {path}: {exc}") from None
    models = {}
    for i, item in enumerate(raw.get("models", [])):
        entry = _entry(item, f"models[{i}]")
        if entry.name in models:
            raise ModelError(f"{path}: models[{i}].name: duplicate {entry.name!r}")
        models[entry.name] = entry
    profiles: dict[str, dict[str, str]] = {}
    for pname, slots in raw.get("profiles", {}).items():
        missing = [s for s in PROFILE_SLOTS if s not in slots]
        if missing:
            raise ModelError(f"{path}: profiles.{pname}: missing {', '.join(missing)}")
        for slot, model in slots.items():
            if slot not in PROFILE_SLOTS and slot not in OPTIONAL_SLOTS:
                raise ModelError(f"{path}: profiles.{pname}.{slot}: unknown slot")
            if model not in models:
                raise ModelError(f"{path}: profiles.{pname}.{slot}: unknown model {model!r}")
        multi = slots.get("stt_live_multi")
        if multi is not None and models[multi].language != MULTILINGUAL:
            raise ModelError(
                f"{path}: profiles.{pname}.stt_live_multi: {multi!r} is not multilingual "
                f"(its language is {models[multi].language!r})"
            )
        profiles[pname] = dict(slots)
    voices: dict[str, str] = {}
    for entry in models.values():
        if entry.role != "tts":
            continue
        if entry.language in voices:
            raise ModelError(
                f"{path}: two voices for language {entry.language!r} "
                f"({voices[entry.language]!r} and {entry.name!r}); one voice per language"
            )
        voices[entry.language] = entry.name
    return Manifest(models=models, profiles=profiles)


def _entry(item: dict[str, Any], where: str) -> ModelEntry:
    try:
        role = str(item["role"])
        if role not in ROLES:
            raise ModelError(f"{where}.role: {role!r} is not one of {', '.join(ROLES)}")
        files = []
        for j, f in enumerate(item["files"]):
            parts = []
            for part in f["parts"]:
                package, sep, inner = str(part).partition(":")
                if not sep or not package or not inner:
                    raise ModelError(f"{where}.files[{j}].parts: {part!r} is not package:path")
                parts.append((package, inner))
            sha = str(f["sha256"]).lower()
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise ModelError(f"{where}.files[{j}].sha256: not a sha256")
            files.append(ModelFile(str(f["name"]), int(f["size"]), sha, tuple(parts)))
        return ModelEntry(
            name=str(item["name"]),
            role=role,
            language=str(item["language"]),
            format=str(item["format"]),
            licence=str(item["licence"]),
            devices=tuple(str(d) for d in item["devices"]),
            packages=tuple(str(p) for p in item["packages"]),
            files=tuple(files),
        )
    except KeyError as exc:
        raise ModelError(f"{where}: missing {exc.args[0]}") from None
