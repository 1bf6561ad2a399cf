"""What the system page shows: Asterisk over AMI, phones and trunks, models and the device each
runs on, disks and backups. Everything here only reads; nothing in it holds personal data.

Asterisk is asked over a short-lived AMI session of its own (a few actions, then closed), with
a short timeout, so a stopped or wedged Asterisk makes the page say "unreachable" and why
instead of hanging it. The telephony service's own AMI session is in another process.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.telephony.ami import AmiClient, AmiError, probe_session

AMI_TIMEOUT_S = 2.0
# A whole status round (login + four actions) gets at most this long.
AMI_BUDGET_S = 4.0
LIST_TIMEOUT_S = 1.0
MODEL_CACHE_S = 60.0


@dataclass(frozen=True)
class Endpoint:
    """A PJSIP endpoint as Asterisk sees it: a desk phone, the AI agent, a trunk or IP peer."""

    name: str
    kind: str
    """extension | agent | ip peer | other (from the config, by name)."""
    label: str
    device_state: str
    contacts: list[str]
    """Registered contacts (`aor/uri`), empty when the endpoint is not registered."""

    @property
    def registered(self) -> bool:
        return bool(self.contacts)


@dataclass(frozen=True)
class Registration:
    """An outbound registration (to a SIP trunk provider)."""

    name: str
    server: str
    status: str


@dataclass(frozen=True)
class AsteriskStatus:
    reachable: bool
    error: str = ""
    """Why Asterisk could not be asked (empty when reachable)."""
    address: str = ""
    version: str = ""
    system_name: str = ""
    up_since: str = ""
    reloaded: str = ""
    active_calls: int | None = None
    endpoints: list[Endpoint] = field(default_factory=list)
    endpoints_error: str = ""
    """Why the endpoint list is empty when Asterisk refused or failed to list them."""
    registrations: list[Registration] = field(default_factory=list)
    registrations_note: str = ""
    """Why there are no outbound registrations (none configured, module not loaded)."""


@dataclass(frozen=True)
class ModelState:
    name: str
    role: str
    language: str
    size_mb: float
    installed: bool
    problem: str
    device: str
    """cpu or cuda: where this model's engine runs on this box."""
    slot: str
    """What the active profile uses it as (stt_live, llm, …), empty when unused."""


@dataclass(frozen=True)
class Gpu:
    present: bool
    cuda_devices: int
    """GPUs CTranslate2 (speech recognition) can use."""
    llama_offload: bool
    onnx_cuda: bool


@dataclass(frozen=True)
class ModelsStatus:
    profile: str
    directory: str
    models: list[ModelState]
    gpu: Gpu
    error: str = ""

    @property
    def used(self) -> list[ModelState]:
        return [m for m in self.models if m.slot]

    @property
    def ready(self) -> bool:
        return not self.error and all(m.installed for m in self.used)


@dataclass(frozen=True)
class Disk:
    what: str
    path: str
    free_gb: float
    total_gb: float
    used_pct: float


@dataclass(frozen=True)
class Backup:
    name: str
    created_at: float
    size_mb: float
    verified: bool | None
    """True/False: the last verification passed/failed; None: never verified."""


@dataclass(frozen=True)
class BackupsStatus:
    directory: str
    keep: int
    archives: list[Backup]
    error: str = ""


def _kind(cfg: Config, name: str) -> tuple[str, str]:
    for ext in cfg.extensions:
        if ext.number == name:
            return "extension", ext.name
    if name == cfg.agent.username:
        return "agent", "AI voice agent"
    for peer in cfg.ip_peers:
        if peer.name == name:
            return "ip peer", peer.match
    return "other", ""


def _contacts(raw: str) -> list[str]:
    # "201/sip:201@127.0.0.1:5062;ob,202/sip:…" — empty or "" when nothing registered.
    return [c for c in (x.strip() for x in raw.split(",")) if c and c != "<none>"]


def _parse_endpoints(cfg: Config, events: list[dict[str, str]]) -> list[Endpoint]:
    out = []
    for ev in events:
        if ev.get("Event") != "EndpointList":
            continue
        name = ev.get("ObjectName", "")
        kind, label = _kind(cfg, name)
        out.append(
            Endpoint(
                name=name,
                kind=kind,
                label=label,
                device_state=ev.get("DeviceState", ""),
                contacts=_contacts(ev.get("Contacts", "")),
            )
        )
    order = {"agent": 0, "extension": 1, "ip peer": 2, "other": 3}
    return sorted(out, key=lambda e: (order[e.kind], e.name))


def _parse_registrations(events: list[dict[str, str]]) -> list[Registration]:
    return [
        Registration(
            name=ev.get("ObjectName", ""),
            server=ev.get("ServerUri", ""),
            status=ev.get("Status", ""),
        )
        for ev in events
        if ev.get("Event") == "OutboundRegistrationDetail"
    ]


async def asterisk_status(cfg: Config, *, timeout_s: float = AMI_TIMEOUT_S) -> AsteriskStatus:
    """Ask Asterisk over AMI; an unreachable Asterisk is a state, not an exception."""
    a = cfg.asterisk
    address = f"{a.ami_host}:{a.ami_port}"
    try:
        async with probe_session(cfg, connect_timeout_s=timeout_s, budget_s=AMI_BUDGET_S) as ami:
            core = await ami.action("CoreStatus")
            settings = await ami.action("CoreSettings")
            # Side by side: a list Asterisk refuses costs its timeout once, not twice.
            (
                (endpoints, endpoints_error),
                (registrations, registrations_note),
            ) = await asyncio.gather(
                _optional_list(ami, "PJSIPShowEndpoints"),
                _optional_list(ami, "PJSIPShowRegistrationsOutbound"),
            )
    except AmiError as exc:
        return AsteriskStatus(False, str(exc), address)
    calls = core.get("CoreCurrentCalls", "")
    return AsteriskStatus(
        reachable=True,
        address=address,
        version=settings.get("AsteriskVersion", ""),
        system_name=settings.get("SystemName", ""),
        up_since=f"{core.get('CoreStartupDate', '')} {core.get('CoreStartupTime', '')}".strip(),
        reloaded=f"{core.get('CoreReloadDate', '')} {core.get('CoreReloadTime', '')}".strip(),
        active_calls=int(calls) if calls.isdigit() else None,
        endpoints=_parse_endpoints(cfg, endpoints),
        endpoints_error=endpoints_error,
        registrations=_parse_registrations(registrations),
        registrations_note=registrations_note,
    )


async def _optional_list(client: AmiClient, action: str) -> tuple[list[dict[str, str]], str]:
    """A list action's events, or none and why: an empty list ("No registrations found")
    is no rows and no note; a refused one ("Permission denied", an unloaded module's
    "Invalid/unknown command") is no rows and Asterisk's reason; no answer within
    LIST_TIMEOUT_S is no rows and says so."""
    try:
        return await asyncio.wait_for(client.action_list(action), LIST_TIMEOUT_S), ""
    except AmiError as exc:
        return [], str(exc)
    except TimeoutError:
        return [], f"Asterisk gave no {action} list within {LIST_TIMEOUT_S:.0f} s"


_models_cache: tuple[float, str, ModelsStatus] | None = None


def _models_now(cfg: Config) -> ModelsStatus:
    from appliance.models.commands import active_profile
    from appliance.models.devices import detect
    from appliance.models.manifest import ModelError, load_manifest
    from appliance.models.store import ModelStore

    devices = detect()
    gpu = Gpu(
        present=devices.any_gpu or devices.onnx_cuda,
        cuda_devices=devices.ctranslate2_cuda,
        llama_offload=devices.llama_gpu_offload,
        onnx_cuda=devices.onnx_cuda,
    )
    try:
        manifest = load_manifest()
        profile = active_profile(cfg, manifest)
        slots = {e.name: slot for slot, e in manifest.profile(profile).items()}
    except ModelError as exc:
        return ModelsStatus("", str(cfg.models.dir), [], gpu, error=str(exc))
    store = ModelStore(cfg.models.dir, manifest)
    models = []
    for entry in manifest.models.values():
        st = store.quick_status(entry)
        models.append(
            ModelState(
                name=entry.name,
                role=entry.role,
                language=entry.language,
                size_mb=round(entry.size / 1e6, 1),
                installed=st.installed,
                problem=st.problem,
                device=devices.for_engine(entry.format),
                slot=slots.get(entry.name, ""),
            )
        )
    return ModelsStatus(profile, str(cfg.models.dir), models, gpu)


async def models_status(cfg: Config) -> ModelsStatus:
    """Manifest models, installed state (the install-time sha256 stamp and sizes now), the
    device each runs on; probed in a thread (the GPU probe loads the engines' libraries)."""
    global _models_cache  # noqa: PLW0603 - one small per-process cache
    now = time.monotonic()
    key = str(cfg.models.dir)
    if _models_cache is not None and _models_cache[1] == key and now - _models_cache[0] < 60:
        return _models_cache[2]
    status = await asyncio.to_thread(_models_now, cfg)
    _models_cache = (now, key, status)
    return status


def _disk(what: str, path: Path) -> Disk | None:
    # The nearest existing parent: a directory not made yet still lives on some disk.
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return None
    return Disk(
        what=what,
        path=str(path),
        free_gb=round(usage.free / 1e9, 2),
        total_gb=round(usage.total / 1e9, 2),
        used_pct=round(100 * usage.used / usage.total, 1) if usage.total else 0.0,
    )


def disks(cfg: Config) -> list[Disk]:
    places = [
        ("state and database", cfg.state_dir),
        ("recordings", cfg.recordings_dir),
        ("backups", cfg.backup.dir),
        ("models", cfg.models.dir),
    ]
    out: list[Disk] = []
    for what, path in places:
        d = _disk(what, path)
        if d is not None:
            out.append(d)
    return out


def backups_status(cfg: Config) -> BackupsStatus:
    from appliance.privacy.backup import list_archives

    try:
        listed = list_archives(cfg)
    except (OSError, CallvaultError, ValueError) as exc:
        return BackupsStatus(str(cfg.backup.dir), cfg.backup.keep, [], error=str(exc))
    archives = [
        Backup(
            name=a.path.name,
            created_at=a.created_at,
            size_mb=round(a.stored_bytes / 1e6, 1),
            verified=None if a.verified is None else bool(a.verified.get("ok")),
        )
        for a in reversed(listed)
    ]
    return BackupsStatus(str(cfg.backup.dir), cfg.backup.keep, archives)


@dataclass(frozen=True)
class SystemStatus:
    asterisk: AsteriskStatus
    models: ModelsStatus
    disks: list[Disk]
    backups: BackupsStatus


async def system_status(cfg: Config) -> SystemStatus:
    asterisk, models = await asyncio.gather(asterisk_status(cfg), models_status(cfg))
    return SystemStatus(
        asterisk=asterisk,
        models=models,
        disks=await asyncio.to_thread(disks, cfg),
        backups=await asyncio.to_thread(backups_status, cfg),
    )


def summary(models: ModelsStatus) -> dict[str, Any]:
    """The dashboard's one-line model/GPU status."""
    used = models.used
    return {
        "profile": models.profile,
        "ready": models.ready,
        "installed": sum(m.installed for m in used),
        "used": len(used),
        "gpu": models.gpu.present,
        "devices": sorted({m.device for m in used}),
        "error": models.error,
    }
