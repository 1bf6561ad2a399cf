"""The admin listener inside another process's event loop (`callvault serve`).

uvicorn normally owns the process's signals; embedded, the host process does, so the server's
signal capture is switched off and it is stopped by setting `should_exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterator

import uvicorn

from appliance.config import Config

log = logging.getLogger(__name__)


class _Embedded(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _TlsConfig(uvicorn.Config):
    """uvicorn's context with TLS 1.2 as the floor, whatever the system's OpenSSL allows."""

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2


def uvicorn_config(cfg: Config, *, tls: bool = True) -> uvicorn.Config:
    from appliance.admin.app import create_app
    from appliance.admin.tls import ensure_certificate

    files: dict[str, str] = {}
    if tls:
        cert, key = ensure_certificate(cfg)
        files = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    return _TlsConfig(
        create_app(cfg),
        host=cfg.admin.bind,
        port=cfg.admin.port,
        log_level="warning",
        server_header=False,
        lifespan="on",
        **files,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def admin_listener(cfg: Config) -> AsyncIterator[None]:
    server = _Embedded(uvicorn_config(cfg))
    task = asyncio.create_task(server.serve(), name="admin-listener")
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it (e.g. the port is taken)
            raise RuntimeError("the admin listener stopped during start")
        await asyncio.sleep(0.05)
    log.warning("admin UI and API on https://%s:%d/", cfg.admin.bind, cfg.admin.port)
    try:
        yield
    finally:
        server.should_exit = True
        await task
