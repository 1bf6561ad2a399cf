"""Thin adapter over panoramisk: the only module that knows it.

panoramisk 1.4 reconnects by itself but (a) `connect()` returns before login, (b) a failed first
connect is retried forever with only a log line, (c) `close()` does not stop the retries. This
adapter turns those into clear errors on the first connect, reports connection state changes so
the service can reconcile what it missed, and stops retrying when closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from appliance.errors import CallvaultError

if TYPE_CHECKING:
    from appliance.config import Config

log = logging.getLogger(__name__)
LIST_TIMEOUT_S = 10.0
"""A list action that has not ended by then failed (a lost reply must not hang a page)."""

AmiEvent = Mapping[str, str]


class AmiError(CallvaultError):
    pass


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """One malformed message is dropped and logged, not fatal to the connection.

    panoramisk raises from `data_received` on e.g. a message with two `Event:` headers (found by
    bench/fuzz.py); asyncio then closes the transport, and every event still buffered is lost.
    """

    def handle_message(self, message: Any) -> None:
        try:
            super().handle_message(message)
        except Exception:
            log.exception("dropped an AMI message that could not be handled: %.200r", message)


class _Manager(Manager):  # type: ignore[misc]
    closing = False

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.closing:
            return None
        return super().connect(*args, **kwargs)


class AmiClient:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        on_event: Callable[[AmiEvent], None],
        on_state: Callable[[bool], None] | None = None,
        connect_timeout_s: float = 5.0,
        reconnect_s: float = 1.0,
        ping_s: int = 5,
    ) -> None:
        self.address = f"{host}:{port}"
        self.username = username
        self._on_event = on_event
        self._on_state = on_state
        self._connect_timeout_s = connect_timeout_s
        self._first_login: asyncio.Future[bool] | None = None
        self._manager = _Manager(
            host=host,
            port=port,
            username=username,
            secret=secret,
            ping_delay=ping_s,
            ping_interval=ping_s,
            reconnect_timeout=max(1, round(reconnect_s)),
            on_login=self._logged_in,
            on_disconnect=self._disconnected,
            on_connect=lambda _m: None,
            protocol_factory=_Protocol,
        )
        self._manager.register_event("*", self._dispatch)
        self.logins = 0

    @classmethod
    def for_config(
        cls,
        cfg: Config,
        *,
        on_event: Callable[[AmiEvent], None] = lambda _ev: None,
        on_state: Callable[[bool], None] | None = None,
        connect_timeout_s: float | None = None,
        ping_s: int = 5,
    ) -> AmiClient:
        """A client for the configured Asterisk (`[asterisk]` address, user, secret file).
        Raises what `Config.ami_secret` raises when the secret cannot be read."""
        a = cfg.asterisk
        return cls(
            host=a.ami_host,
            port=a.ami_port,
            username=a.ami_username,
            secret=cfg.ami_secret(),
            on_event=on_event,
            on_state=on_state,
            connect_timeout_s=a.ami_connect_timeout_s
            if connect_timeout_s is None
            else connect_timeout_s,
            reconnect_s=a.ami_reconnect_s,
            ping_s=ping_s,
        )

    @property
    def connected(self) -> bool:
        return bool(self._manager.authenticated) and bool(
            getattr(self._manager, "_connected", False)
        )

    async def connect(self) -> None:
        """Connect and log in; raise AmiError with what to do when that is impossible."""
        loop = asyncio.get_running_loop()
        self._manager.loop = loop
        self._manager.closing = False
        self._first_login = loop.create_future()
        task = self._manager.connect()
        try:
            await asyncio.wait_for(asyncio.shield(task), self._connect_timeout_s)
        except (TimeoutError, OSError) as exc:
            await self.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            raise AmiError(
                f"cannot reach Asterisk AMI at {self.address}: {reason} "
                "(is Asterisk running? try `callvault asterisk up`)"
            ) from None
        auth = self._manager.authenticated_future
        try:
            if auth is not None:
                response = await asyncio.wait_for(asyncio.shield(auth), self._connect_timeout_s)
                if not response.success:
                    await self.close()
                    message = response.get("Message", "refused")
                    raise AmiError(
                        f"AMI login as {self.username!r} at {self.address} failed: {message} "
                        "(check asterisk.ami_username / ami_secret and manager.conf)"
                    )
            await asyncio.wait_for(asyncio.shield(self._first_login), self._connect_timeout_s)
        except TimeoutError:
            await self.close()
            raise AmiError(f"AMI at {self.address} did not answer the login") from None

    async def close(self) -> None:
        self._manager.closing = True
        self._manager.close()
        await asyncio.sleep(0)

    async def action(self, name: str, **fields: str) -> dict[str, str]:
        """Send an action; return its response, raising AmiError if Asterisk says Error."""
        if not self.connected:
            raise AmiError(f"AMI at {self.address} is not connected; {name} not sent")
        response = await self._manager.send_action({"Action": name, **fields})
        messages = response if isinstance(response, list) else [response]
        first = messages[0]
        if first.get("Response") == "Error":
            raise AmiError(f"{name} failed: {first.get('Message', 'error')}")
        return {str(k): str(v) for k, v in first.items()}

    async def action_list(self, name: str, **fields: str) -> list[dict[str, str]]:
        """Send a list action (…Complete terminated) and return every event of the list."""
        if not self.connected:
            raise AmiError(f"AMI at {self.address} is not connected; {name} not sent")
        # Not `as_list=True`: with it panoramisk waits for a list end that an error reply
        # ("Response: Error") never sends, and the caller hangs. Left to itself it reads the
        # first reply's "EventList: start" and stops at the "…Complete" event.
        response = await asyncio.wait_for(
            self._manager.send_action({"Action": name, **fields}), LIST_TIMEOUT_S
        )
        messages = response if isinstance(response, list) else [response]
        first = {str(k): str(v) for k, v in messages[0].items()} if messages else {}
        if len(messages) == 1 and first.get("Response") in ("Error", "Fail", "Failure"):
            reason = first.get("Message", "no reason given")
            # Asterisk answers an empty list with an error for some actions
            # (PJSIPShowContacts: "No Contacts found").
            if re.fullmatch(r"No .* found\.?", reason, re.IGNORECASE):
                return []
            raise AmiError(f"AMI {name} failed at {self.address}: {reason}")
        return [{str(k): str(v) for k, v in m.items()} for m in messages]

    def drop_connection(self) -> None:
        """Abort the TCP connection as a network fault would (tests and diagnostics)."""
        protocol = getattr(self._manager, "protocol", None)
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()

    # ---- panoramisk callbacks
    def _logged_in(self, _manager: Any) -> None:
        self.logins += 1
        if self._first_login is not None and not self._first_login.done():
            self._first_login.set_result(True)
        log.info("AMI logged in at %s (login #%d)", self.address, self.logins)
        if self._on_state is not None:
            self._on_state(True)

    def _disconnected(self, _manager: Any, exc: Exception | None) -> None:
        self._manager.authenticated = False
        if self._manager.closing:
            return
        log.warning("AMI connection to %s lost (%s); reconnecting", self.address, exc or "closed")
        if self._on_state is not None:
            self._on_state(False)

    def _dispatch(self, _manager: Any, message: Any) -> None:
        event = {str(k): str(v) for k, v in message.items() if not isinstance(v, list)}
        self._on_event(event)


@contextlib.asynccontextmanager
async def probe_session(
    cfg: Config, *, connect_timeout_s: float, budget_s: float
) -> AsyncIterator[AmiClient]:
    """A short AMI session for a status probe: logged in on entry, closed on exit, the whole of
    it (login and what the body asks) within `budget_s`. Whatever goes wrong — the secret
    unreadable, no answer, a refused login, a connection torn down — is one `AmiError` whose
    message says what, for a health check or status page to show as it is."""
    a = cfg.asterisk
    address = f"{a.ami_host}:{a.ami_port}"
    try:
        client = AmiClient.for_config(cfg, connect_timeout_s=connect_timeout_s, ping_s=60)
    except (OSError, CallvaultError) as exc:
        raise AmiError(f"cannot read the AMI secret: {exc}") from exc
    try:
        async with asyncio.timeout(budget_s):
            await client.connect()
            yield client
    except TimeoutError as exc:
        raise AmiError(f"AMI at {address} did not answer in time") from exc
    except OSError as exc:  # a connection torn down mid-session
        raise AmiError(f"AMI at {address}: {exc.strerror or exc}") from exc
    finally:
        await client.close()
