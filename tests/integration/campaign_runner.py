"""The campaign dialler as a process of its own, for the kill-and-restart test (issue 8).

    python -m tests.integration.campaign_runner CONFIG CLOCK_OFFSET_S

Runs what `callvault serve` runs for campaigns (telephony over AMI, with its start-up CDR
reconcile, and `CampaignRuntime`) but no SIP agent: pjsua2 allows one endpoint per process and
the test session's in-process appliance is the registered agent, so this process must not
register. The dialler's clock is real time plus CLOCK_OFFSET_S (the calling window is on the
campaign's clock). Prints "campaign-runner: ready" once dialling; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

from appliance import config
from appliance.campaign.dialer import AmiOriginator, Dialler
from appliance.campaign.runtime import CampaignRuntime
from appliance.store import Database
from appliance.telephony.service import TelephonyService

READY = "campaign-runner: ready"


class _Telephony:
    """What CampaignRuntime reads of the appliance: its telephony service."""

    def __init__(self, telephony: TelephonyService) -> None:
        self.telephony = telephony


async def main(config_path: Path, offset_s: float) -> None:
    cfg = config.load(config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Database(cfg.database) as db:
        telephony = TelephonyService(cfg, db)
        await telephony.start()
        try:
            runtime = CampaignRuntime(_Telephony(telephony), interval_s=0.3)
            runtime.dialler = Dialler(
                telephony.privacy,
                AmiOriginator(telephony),
                clock=lambda: time.time() + offset_s,
            )
            async with runtime:
                print(READY, flush=True)
                await stop.wait()
        finally:
            await telephony.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2])))
