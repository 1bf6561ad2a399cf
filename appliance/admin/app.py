"""The admin listener's Litestar application: the JSON API, its OpenAPI schema, /healthz.

`create_app(cfg)` opens the store and the privacy engine for the app's lifetime. Every
/api route needs a bearer token (appliance.admin.tokens) with the route's scope; errors come
back as JSON naming what was wrong, and a refused action changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from appliance import __version__
from appliance.admin.api import registers as registers_api
from appliance.admin.api import rights as rights_api
from appliance.admin.auth import PUBLIC, TokenAuth
from appliance.admin.services import Services, open_services
from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.privacy.master import MasterKeyError
from appliance.privacy.rights.model import UnknownSubjectError
from appliance.store import StoreError

log = logging.getLogger(__name__)


def _error(status: int) -> Any:
    def handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
        if status >= 500:
            log.error("API request failed: %s", exc)
        return Response(
            {"error": type(exc).__name__, "detail": str(exc)},
            status_code=status,
            media_type=MediaType.JSON,
        )

    return handler


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _services(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def create_app(cfg: Config, *, debug: bool = False) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_services(cfg) as services:
            app.state.services = services
            yield

    return Litestar(
        route_handlers=[healthz, rights_api.router, registers_api.router],
        lifespan=[lifespan],
        dependencies={"svc": Provide(_services, sync_to_thread=False)},
        middleware=[DefineMiddleware(TokenAuth, exclude=[f"^{p}" for p in PUBLIC])],
        exception_handlers={
            UnknownSubjectError: _error(404),
            MasterKeyError: _error(503),
            StoreError: _error(500),
            CallvaultError: _error(400),
        },
        openapi_config=OpenAPIConfig(
            title="Callvault API",
            version=__version__,
            path="/schema",
            components=Components(
                security_schemes={
                    "token": SecurityScheme(type="http", scheme="bearer", description="cvt_…")
                }
            ),
            security=[{"token": []}],
        ),
        debug=debug,
    )
