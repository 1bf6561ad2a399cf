"""The admin listener's Litestar application: admin pages, the JSON API, OpenAPI, /healthz.

`create_app(cfg)` opens the store and the privacy engine for the app's lifetime. Pages need a
session (argon2 login, HttpOnly SameSite=Strict __Host- cookie, CSRF token on every form);
/api routes need a bearer token. Each route names the scope it needs (deny by default); a
user's role gives its scopes. Errors come back as JSON (API) or a page (UI) naming what was
wrong, and a refused action changes nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import ResponseHeader
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from appliance import __version__
from appliance.admin.api import campaigns as campaigns_api
from appliance.admin.api import governance as governance_api
from appliance.admin.api import ops as ops_api
from appliance.admin.api import pbx as pbx_api
from appliance.admin.api import registers as registers_api
from appliance.admin.api import rights as rights_api
from appliance.admin.api import system as system_api
from appliance.admin.auth import PUBLIC, AdminAuth, LoginRequired, PasswordChangeRequired
from appliance.admin.services import Services, open_services
from appliance.admin.ui import alerts as alerts_ui
from appliance.admin.ui import calls as calls_ui
from appliance.admin.ui import campaigns as campaigns_ui
from appliance.admin.ui import governance as governance_ui
from appliance.admin.ui import jobs as jobs_ui
from appliance.admin.ui import pbx as pbx_ui
from appliance.admin.ui import privacy as privacy_ui
from appliance.admin.ui import session as session_ui
from appliance.admin.ui import system as system_ui
from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.privacy.master import MasterKeyError
from appliance.privacy.rights.model import UnknownSubjectError
from appliance.store import StoreError

log = logging.getLogger(__name__)
HERE = Path(__file__).parent

# No inline script or style anywhere: the CSP can forbid both.
SECURITY_HEADERS = [
    ResponseHeader(
        name="Content-Security-Policy",
        value="default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none';"
        " form-action 'self'; frame-ancestors 'none'",
    ),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="Referrer-Policy", value="no-referrer"),
    ResponseHeader(name="Permissions-Policy", value="camera=(), microphone=(), geolocation=()"),
    ResponseHeader(name="Strict-Transport-Security", value="max-age=31536000"),
    ResponseHeader(name="Cross-Origin-Opener-Policy", value="same-origin"),
]


def _is_api(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith(("/api/", "/schema"))


def _error(status: int) -> Any:
    def handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        if status >= 500:
            log.error("request %s failed: %s", request.url.path, exc)
        if not _is_api(request) and status in {403, 404}:
            return Template(
                "error.html",
                context={"status": status, "detail": str(exc), "user": request.scope.get("user")},
                status_code=status,
            )
        # Litestar's documented error shape (status_code, detail), plus the error's kind.
        return Response(
            {"status_code": status, "detail": str(exc), "error": type(exc).__name__},
            status_code=status,
            media_type=MediaType.JSON,
        )

    return handler


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        # Not a bug: the telephony process held the database past the busy timeout (a burst of
        # CDRs on a loaded box). Nothing was changed; the client may simply ask again.
        log.warning("request %s: the database stayed busy; answered 503", request.url.path)
        return Response(
            {"status_code": 503, "detail": "The appliance is busy; nothing was changed. Try "
             "again in a few seconds."},
            status_code=503, media_type=MediaType.JSON, headers={"Retry-After": "5"},
        )  # fmt: skip
    # A bug, not bad input: the traceback goes to the journal, the client learns nothing of it.
    log.error("request %s failed", request.url.path, exc_info=exc)
    return Response(
        {"status_code": 500, "detail": "Internal Server Error"},
        status_code=500,
        media_type=MediaType.JSON,
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, LoginRequired) and not _is_api(request):
        return Redirect("/login", status_code=303)
    if isinstance(exc, PasswordChangeRequired) and not _is_api(request):
        return Redirect("/password", status_code=303)
    if not _is_api(request) and exc.status_code in {403, 404}:
        return Template(
            "error.html",
            context={
                "status": exc.status_code,
                "detail": exc.detail,
                "user": request.scope.get("user"),
            },
            status_code=exc.status_code,
        )
    body: dict[str, Any] = {
        "status_code": exc.status_code,
        "detail": exc.detail,
        "error": type(exc).__name__,
    }
    if getattr(exc, "extra", None):  # which field a validation error is about
        body["extra"] = exc.extra
    return Response(
        body,
        status_code=exc.status_code,
        media_type=MediaType.JSON,
        headers=exc.headers,
    )


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _services(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


ROUTES: list[Any] = [
    healthz,
    rights_api.router,
    registers_api.router,
    governance_api.router,
    system_api.router,
    ops_api.router,
    ops_api.readyz,
    session_ui.login_page,
    session_ui.login,
    session_ui.logout,
    session_ui.password_page,
    session_ui.change_password,
    calls_ui.dashboard,
    calls_ui.calls,
    calls_ui.call_detail,
    calls_ui.audio,
    *privacy_ui.ROUTES,
    *governance_ui.ROUTES,
    *system_ui.ROUTES,
    *alerts_ui.ROUTES,
    campaigns_api.router,
    *campaigns_ui.ROUTES,
    pbx_api.router,
    *pbx_ui.ROUTES,
    *jobs_ui.ROUTES,
]


def create_app(cfg: Config, *, debug: bool = False) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_services(cfg) as services:
            app.state.services = services
            yield
            await jobs_ui.close(app.state)  # no job outlives the DB

    return Litestar(
        route_handlers=[
            *ROUTES,
            create_static_files_router(
                path="/static", directories=[HERE / "static"], include_in_schema=False
            ),
        ],
        lifespan=[lifespan],
        dependencies={"svc": Provide(_services, sync_to_thread=False)},
        middleware=[DefineMiddleware(AdminAuth, exclude=[f"^{p}" for p in PUBLIC])],
        csrf_config=CSRFConfig(
            secret=cfg.secrets.get_or_create("csrf_secret", 32),
            cookie_name="__Host-cv_csrf",
            cookie_secure=True,
            cookie_httponly=True,
            cookie_samesite="strict",
            # Bearer-token API calls carry no cookies a forged page could ride on.
            exclude=["^/api/"],
        ),
        template_config=TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine),
        response_headers=SECURITY_HEADERS,
        exception_handlers={
            HTTPException: _http_error,
            UnknownSubjectError: _error(404),
            MasterKeyError: _error(503),
            StoreError: _error(500),
            CallvaultError: _error(400),
            Exception: _unexpected,
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
