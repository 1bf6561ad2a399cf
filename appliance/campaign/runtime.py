"""The dialler inside the serving appliance: `async with CampaignRuntime(app)` runs its passes
next to telephony (it originates over the appliance's AMI connection) until the block ends."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from appliance.campaign.dialer import AmiOriginator, Dialler


class CampaignRuntime:
    def __init__(self, app: Any, *, interval_s: float = 1.0) -> None:
        self.dialler = Dialler(app.telephony.privacy, AmiOriginator(app.telephony))
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CampaignRuntime:
        # Attempts a previous run left out are resolved by the first pass (from the CDRs
        # telephony reconciled at its start), before anything new is dialled.
        self._task = asyncio.create_task(self.dialler.run(self.interval_s), name="campaigns")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
