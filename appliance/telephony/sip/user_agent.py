"""What the agent and a scripted phone share: one account on a shared or owned runtime."""

from __future__ import annotations

import contextlib

from appliance.telephony.sip.account import SipAccount
from appliance.telephony.sip.call import SipCall
from appliance.telephony.sip.runtime import PjRuntime, SipError, SipTransport


class UserAgent:
    """One SIP identity. With `runtime=None` it owns a runtime bound to `bind_host:bind_port`;
    with a shared runtime it uses `transport` or binds its own there (so two user agents never
    share a contact)."""

    label = "user agent"

    def __init__(
        self,
        *,
        username: str,
        password: str | None,
        registrar_host: str | None,
        registrar_port: int,
        display_name: str | None,
        bind_host: str,
        bind_port: int,
        runtime: PjRuntime | None,
        transport: SipTransport | None,
        register_timeout: float,
        max_calls: int = 32,
    ) -> None:
        self.username = username
        self._password = password
        self._registrar_host = registrar_host
        self._registrar_port = registrar_port
        self._display_name = display_name
        self._bind_host = bind_host
        self._bind_port = bind_port
        self._runtime = runtime
        self._owns_runtime = runtime is None
        self._transport = transport
        self._added_transport: SipTransport | None = None
        self._register_timeout = register_timeout
        self._max_calls = max_calls
        self._account: SipAccount | None = None

    @property
    def account(self) -> SipAccount:
        if self._account is None:
            raise SipError(f"{self.label} {self.username} is not started")
        return self._account

    @property
    def runtime(self) -> PjRuntime:
        if self._runtime is None:
            raise SipError(f"{self.label} {self.username} is not started")
        return self._runtime

    @property
    def transport(self) -> SipTransport:
        return self.account.transport

    @property
    def uri(self) -> str:
        """The direct address (where to send calls without a registrar)."""
        return f"sip:{self.username}@{self.transport.host}:{self.transport.port}"

    async def _on_incoming(self, call: SipCall) -> None:
        raise NotImplementedError

    async def _open(self) -> None:
        if self._account is not None:
            raise SipError(f"{self.label} {self.username} is already started")
        runtime = self._runtime
        if runtime is None:
            runtime = PjRuntime(
                bind_host=self._bind_host, bind_port=self._bind_port, max_calls=self._max_calls
            )
            await runtime.__aenter__()
            self._runtime = runtime
            transport = runtime.transport
        elif self._transport is not None:
            transport = self._transport
        else:
            transport = await runtime.add_udp_transport(self._bind_host, self._bind_port)
            self._added_transport = transport
        account = SipAccount(
            runtime,
            username=self.username,
            password=self._password,
            registrar_host=self._registrar_host,
            registrar_port=self._registrar_port,
            transport=transport,
            display_name=self._display_name,
            on_incoming=self._on_incoming,
        )
        self._account = account
        try:
            await account.start()
            await account.wait_registered(self._register_timeout)
        except BaseException:
            await self._close()
            raise

    async def _close(self) -> None:
        account, self._account = self._account, None
        added, self._added_transport = self._added_transport, None
        try:
            if account is not None:
                await account.close()
            if added is not None and self._runtime is not None and not self._owns_runtime:
                # A runtime already shutting down frees every transport itself.
                with contextlib.suppress(SipError):
                    await self._runtime.close_transport(added)
        finally:
            if self._owns_runtime and self._runtime is not None:
                runtime, self._runtime = self._runtime, None
                await runtime.aclose()
