"""`callvault serve`: the telephony service (AMI) and the SIP agent, together in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from appliance.config import Config
from appliance.models.manifest import ModelError
from appliance.privacy import Privacy
from appliance.store import Database
from appliance.telephony.greeter import GreetAndRecord
from appliance.telephony.service import TelephonyService
from appliance.telephony.sip import PjRuntime, SipAgent
from appliance.telephony.sip.agent import CallHandler
from appliance.voice.postcall import PostCallPipeline, Reporter

if TYPE_CHECKING:  # the voice stack (Whisper, llama.cpp, Piper) loads only when used
    from collections.abc import AsyncIterator

    from appliance.pbx.service import PbxService
    from appliance.voice.agent import Recorder

log = logging.getLogger(__name__)


def registrar_host(cfg: Config) -> str:
    host = cfg.asterisk.sip_bind
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 - a bind-all address, mapped to loopback


def line_handler(cfg: Config, recorder: Recorder | None = None) -> CallHandler:
    """The voice agent when its models load; otherwise the recorded greeting, said loudly.

    A missing or corrupt model must not take the lines down: callers still get answered (with
    the line's recorded greeting) and every call is still logged.
    """
    if not cfg.agent.voice:
        return GreetAndRecord(cfg)
    try:
        from appliance.voice.agent import VoiceAgent
        from appliance.voice.engines import VoiceEngines

        return VoiceAgent(cfg, VoiceEngines.load(cfg), recorder=recorder)
    except (ModelError, ImportError) as exc:
        log.error("voice agent unavailable, AI lines play their recorded greeting: %s", exc)  # noqa: TRY400 - the reason is the message
        return GreetAndRecord(cfg)


def report_writer(cfg: Config, db: Database, privacy: Privacy) -> Reporter:
    """The post-call report step (its LLM loads on the first report, not at start)."""
    from appliance.voice.report import default_writer

    return default_writer(cfg, db, privacy)


class Appliance:
    def __init__(
        self,
        cfg: Config,
        db: Database,
        *,
        handler: CallHandler | None = None,
        runtime: PjRuntime | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.telephony = TelephonyService(cfg, db)
        # After hangup: transcripts of the recorded legs, then the report (appliance.voice).
        # Model work waits while the agent has calls up: they share the CPU (and the models).
        self.postcall = PostCallPipeline(
            cfg,
            db,
            self.telephony.privacy,
            recordings=self.telephony.recordings,
            reporter=reporter or report_writer(cfg, db, self.telephony.privacy),
            idle=lambda: not self.telephony.agent_calls_up(),
        )
        self.telephony.on_ingested = self.postcall.notify
        self.agent = SipAgent(
            handler=handler or line_handler(cfg, recorder=self.telephony),
            username=cfg.agent.username,
            password=cfg.agent_password(),
            registrar_host=registrar_host(cfg),
            registrar_port=cfg.asterisk.sip_port,
            bind_host=cfg.agent.bind,
            bind_port=cfg.agent.port,
            max_calls=cfg.agent.max_calls,
            runtime=runtime,
            # A crash of the voice stack mid-call: the line's recorded greeting, then hang up.
            fallback=GreetAndRecord(cfg, listen_s=5.0),
        )

    async def start(self) -> None:
        await self.telephony.start()
        try:
            await self.postcall.start()  # resumes the jobs a previous run left unfinished
            await self.agent.start()
        except BaseException:
            await self.postcall.stop()
            await self.telephony.stop()
            raise

    async def stop(self) -> None:
        try:
            await self.postcall.stop()
            await self.agent.stop()
            # The handler's own background work (the voice agent's office calendar writes).
            close = getattr(self.agent.handler, "aclose", None)
            if close is not None:
                await close()
        finally:
            await self.telephony.stop()

    async def __aenter__(self) -> Appliance:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def _running(service: PbxService) -> AsyncIterator[None]:
    await service.start()
    try:
        yield
    finally:
        await service.stop()


@contextlib.asynccontextmanager
async def _office_calendars(app: Appliance) -> AsyncIterator[None]:
    """Lines with an office calendar (CalDAV) are kept in step with the store while serving."""
    from appliance.voice.dialogue.caldav import keep_in_step
    from appliance.voice.dialogue.calendar import StoreCalendar

    every = [ln.caldav.retry_s for ln in app.cfg.lines if ln.caldav is not None]
    if not every:
        yield
        return
    calendar = StoreCalendar(app.db, app.telephony.privacy)
    task = asyncio.create_task(keep_in_step(calendar, min(every)), name="office-calendars")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await calendar.aclose()


async def run_until_signalled(cfg: Config, *, admin: bool = True) -> None:
    """Telephony, the SIP agent and (unless `admin` is false: systemd runs it as its own unit)
    the admin UI and API, until SIGTERM or SIGINT."""
    from appliance.admin.listener import admin_listener

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from appliance.campaign.runtime import CampaignRuntime
    from appliance.ops.logging import configure as configure_logging
    from appliance.ops.runtime import OpsRuntime
    from appliance.pbx.service import PbxService

    configure_logging(cfg.ops.log_format, cfg.ops.log_level)
    listener = admin_listener(cfg) if admin else contextlib.nullcontext()
    async with (
        Database(cfg.database) as db,
        Appliance(cfg, db) as app,
        OpsRuntime(app),  # metrics snapshot, alert checks, log level, systemd notify
        CampaignRuntime(app),  # the outbound campaign dialler (issue 8)
        _running(PbxService(cfg, db, app.telephony.privacy)),  # time conditions, SIP guard
        _office_calendars(app),  # CalDAV calendars of booking lines (issue 10)
        listener,
    ):
        log.warning(
            "callvault serving: AMI %s, agent %s registered, %d lines",
            app.telephony.ami.address,
            cfg.agent.username,
            len(cfg.lines),
        )
        print("callvault: ready", flush=True)
        await stop.wait()
    print("callvault: stopped", flush=True)


async def originate_once(cfg: Config, number: str, line: str) -> str:
    """Place one outbound call from the command line (the serving process records it)."""
    from appliance.privacy.cli import operator

    async with Database(cfg.database) as db:
        svc = TelephonyService(cfg, db)
        await svc.ami.connect()
        try:
            return await svc.originate(number, line, actor=operator())
        finally:
            await svc.stop()
