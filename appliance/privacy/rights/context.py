"""What the steps of one request share, and the pipeline that runs them resumably."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance.errors import CallvaultError
from appliance.privacy.audit import Actor
from appliance.privacy.identifiers import Identifier
from appliance.privacy.rights.model import RightsError, Status

if TYPE_CHECKING:
    from appliance.privacy.rights.service import Rights

log = logging.getLogger(__name__)


@dataclass
class Context:
    rights: Rights
    request_id: int
    kind: str
    ident: Identifier
    actor: Actor
    params: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    """JSON-able, no personal data; saved with every checkpoint so a resumed run has it."""
    step_index: int = 0


Step = tuple[str, Callable[[Context], Awaitable[None]]]
# Failures a step may meet and the log records; anything else is a bug and propagates.
STEP_FAILURES = (CallvaultError, OSError, sqlite3.Error, ValueError)


async def run_steps(ctx: Context, steps: Sequence[Step], checkpoint: int) -> None:
    """Run `steps[checkpoint:]`; each success moves the checkpoint, a failure is logged."""
    rights = ctx.rights
    for index in range(checkpoint, len(steps)):
        name, fn = steps[index]
        ctx.step_index = index
        try:
            await fn(ctx)
        except STEP_FAILURES as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.warning("request %d step %s failed: %s", ctx.request_id, name, message)
            await rights.db.rr_update(
                ctx.request_id,
                {"status": Status.ERROR, "updated_at": rights.clock()},
                log=(rights.clock(), name, "error", message),
            )
            raise RightsError(
                f"request {ctx.request_id}: step {name!r} failed ({message}); nothing after "
                f"step {index} was done; fix the cause and process the request again"
            ) from exc
        if ctx.state.pop("_committed", False):
            # The step stored its checkpoint inside its own transaction.
            await rights.db.rr_log_add(ctx.request_id, rights.clock(), name, "ok", "committed")
            continue
        await rights.db.rr_update(
            ctx.request_id,
            {
                "checkpoint": index + 1,
                "response": json.dumps(ctx.state),
                "updated_at": rights.clock(),
            },
            log=(rights.clock(), name, "ok", ctx.state.pop("_log", "done")),
        )
