"""Bearer-token authentication and per-route scope guards (deny by default)."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from appliance.admin.services import Services
from appliance.admin.tokens import Principal, TokenError

# Paths anyone on the admin network may read: the API description and liveness.
PUBLIC = {"/schema", "/healthz"}


class TokenAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise NotAuthorizedException("an API token is required (Authorization: Bearer …)")
        services: Services = connection.app.state.services
        try:
            principal = await services.tokens.authenticate(token)
        except TokenError as exc:
            raise NotAuthorizedException(f"invalid API token: {exc}") from None
        return AuthenticationResult(user=principal, auth=token)


def scope(name: str) -> Any:
    """A guard admitting only tokens that carry `name`."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        user = connection.scope.get("user")
        if not isinstance(user, Principal) or name not in user.scopes:
            raise PermissionDeniedException(f"this token lacks the {name!r} scope")

    return guard
