"""Who is calling: an API token (Authorization: Bearer) on /api, a session cookie elsewhere.

Both kinds of principal carry scopes (a token its own, a user its role's), and every route
names the scope it needs with `scope(...)`: deny by default. A user who must change a one-time
password reaches nothing but the password page until they do.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from appliance.admin.services import Services
from appliance.admin.tokens import Principal, TokenError
from appliance.admin.users import User

SESSION_COOKIE = "__Host-cv_session"
# Reachable without logging in: liveness, the API description, the login page, static files.
PUBLIC = ("/healthz", "/readyz", "/schema", "/login", "/static/")
FIRST_LOGIN_ALLOWED = ("/password", "/logout")


class LoginRequired(NotAuthorizedException):
    """A page (not the API) needs a session: answered with a redirect to /login."""


class PasswordChangeRequired(PermissionDeniedException):
    """The user still has a one-time password: answered with a redirect to /password."""


class AdminAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        services: Services = connection.app.state.services
        if connection.url.path.startswith("/api/"):
            header = connection.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise NotAuthorizedException("an API token is required (Authorization: Bearer …)")
            try:
                principal = await services.tokens.authenticate(token)
            except TokenError as exc:
                raise NotAuthorizedException(f"invalid API token: {exc}") from None
            return AuthenticationResult(user=principal, auth=token)
        cookie = connection.cookies.get(SESSION_COOKIE, "")
        user = await services.users.session(cookie) if cookie else None
        if user is None:
            raise LoginRequired("please log in")
        if user.must_change and not connection.url.path.startswith(FIRST_LOGIN_ALLOWED):
            raise PasswordChangeRequired("change your one-time password first")
        return AuthenticationResult(user=user, auth=cookie)


def scope(name: str) -> Any:
    """A guard admitting only principals (tokens or users) that carry `name`."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        user = connection.scope.get("user")
        if not isinstance(user, Principal | User) or name not in user.scopes:
            raise PermissionDeniedException(f"this requires the {name!r} permission")

    guard.required_scope = name  # type: ignore[attr-defined]  # read by the route-table test
    return guard


def logged_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Any logged-in user (pages every role sees: dashboard, own password)."""
    if not isinstance(connection.scope.get("user"), User):
        raise PermissionDeniedException("log in as a user to see this page")
