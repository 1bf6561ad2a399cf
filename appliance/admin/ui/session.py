"""Login, logout and the password page: the only pages a user with a one-time password sees."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from appliance.admin.auth import SESSION_COOKIE, logged_in
from appliance.admin.services import Svc
from appliance.admin.users import IDLE_S, AuthError, User, UserError

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
# Per client address: at most this many failed logins per window, whoever they try.
IP_FAILURES = 10
IP_WINDOW_S = 300.0
_failures: dict[str, deque[float]] = defaultdict(deque)


def _too_many(ip: str, now: float) -> bool:
    q = _failures[ip]
    while q and now - q[0] > IP_WINDOW_S:
        q.popleft()
    return len(q) >= IP_FAILURES


def session_cookie(value: str, max_age: int = IDLE_S) -> Cookie:
    # __Host- prefix: Secure, Path=/, no Domain — the browser refuses it otherwise.
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


@get("/login", name="login")
async def login_page(request: Request[Any, Any, Any]) -> Template:
    return Template("login.html", context={"error": "", "username": ""})


@post("/login", status_code=200)
async def login(data: Form, svc: Svc, request: Request[Any, Any, Any]) -> Response[Any]:
    ip = request.client.host if request.client else "?"
    now = time.monotonic()
    username = data.get("username", "")
    if _too_many(ip, now):
        return Template(
            "login.html",
            context={"error": "Too many failed logins from here. Wait a few minutes.",
                     "username": username},
            status_code=429,
        )  # fmt: skip
    try:
        user, cookie = await svc.users.login(username, data.get("password", ""))
    except AuthError as exc:
        _failures[ip].append(now)
        return Template(
            "login.html", context={"error": str(exc), "username": username}, status_code=401
        )
    # A fresh session id at login (any cookie the browser brought is ignored): no fixation.
    target = "/password" if user.must_change else "/"
    return Redirect(target, status_code=303, cookies=[session_cookie(cookie)])


@post("/logout", guards=[logged_in])
async def logout(svc: Svc, request: Request[User, str, Any]) -> Redirect:
    await svc.users.logout(request.auth)
    return Redirect("/login", status_code=303, cookies=[session_cookie("", max_age=0)])


@get("/password", guards=[logged_in])
async def password_page(request: Request[User, str, Any]) -> Template:
    return Template("password.html", context={"user": request.user, "error": ""})


@post("/password", guards=[logged_in], status_code=200)
async def change_password(data: Form, svc: Svc, request: Request[User, str, Any]) -> Response[Any]:
    new, again = data.get("new", ""), data.get("again", "")
    error = "the two new passwords differ" if new != again else ""
    if not error:
        try:
            cookie = await svc.users.change_password(
                request.user, data.get("current", ""), new, request.auth
            )
        except UserError as exc:
            error = str(exc)
    if error:
        return Template(
            "password.html", context={"user": request.user, "error": error}, status_code=400
        )
    return Redirect("/", status_code=303, cookies=[session_cookie(cookie)])
