"""What every dashboard route shares: who is signed in, pages, form checks, HTML errors."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment
from starlette.datastructures import FormData

from agentyard.api.body import check_storable
from agentyard.api.errors import STATUS
from agentyard.core.errors import AgentyardError, Forbidden, InvalidInput
from agentyard.server import Agentyard
from agentyard.web.session import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, Sessions

SIGN_IN = "/signin"


class SignInNeeded(Exception):
    """No valid session: pages redirect to the sign-in page, fragments answer 401."""


@dataclass(frozen=True)
class Viewer:
    user_id: str
    key_id: str


def yard(request: Request) -> Agentyard:
    app: Agentyard = request.app.state.yard
    return app


def sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.web_sessions
    return found


def templates(request: Request) -> Environment:
    env: Environment = request.app.state.web_templates
    return env


async def signed_in(request: Request) -> Viewer | None:
    session = sessions(request).read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    user = await yard(request).keys.user_of(session.key_id)  # None once the key is revoked
    return None if user is None else Viewer(user, session.key_id)


async def viewer(request: Request) -> Viewer:
    """The dependency of every signed-in route."""
    found = await signed_in(request)
    if found is None:
        raise SignInNeeded()
    request.state.viewer = found
    return found


def set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def page(request: Request, template: str, code: int = 200, **context: Any) -> HTMLResponse:
    """A rendered page (or fragment) with the CSRF token its forms carry."""
    csrf_cookie = request.cookies.get(CSRF_COOKIE)
    fresh = None
    if not csrf_cookie or len(csrf_cookie) > 200:
        csrf_cookie = fresh = Sessions.new_csrf_cookie()
    context.setdefault("viewer", getattr(request.state, "viewer", None))
    html = (
        templates(request)
        .get_template(template)
        .render(request=request, csrf=sessions(request).csrf_token(csrf_cookie), **context)
    )
    response = HTMLResponse(html, status_code=code)
    response.headers["Cache-Control"] = "no-store"
    if fresh is not None:
        set_cookie(response, request, CSRF_COOKIE, fresh, None)
    return response


def local_target(value: str | None) -> str | None:
    """``value`` if it is a path on this site to go back to after signing in, else None
    (never another site: ``//host`` and backslashes are refused)."""
    if not value or len(value) > 2000 or not value.startswith("/"):
        return None
    if value.startswith(("//", "/\\")) or "\\" in value or not value.isprintable():
        return None
    return None if value.startswith(SIGN_IN) else value


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def form_of(request: Request) -> dict[str, str]:
    """The posted form's text fields, once its CSRF token checks out."""
    form: FormData = await request.form()
    token = form.get(CSRF_FIELD)
    if not sessions(request).csrf_ok(
        request.cookies.get(CSRF_COOKIE), token if isinstance(token, str) else None
    ):
        raise Forbidden(
            "This form has expired or did not come from this site: reload the page and retry."
        )
    data = {k: v for k, v in form.multi_items() if isinstance(v, str) and k != CSRF_FIELD}
    check_storable(data, "form")
    return data


def text_field(data: dict[str, str], name: str, label: str, max_len: int) -> str | None:
    value = data.get(name, "").strip()
    if len(value) > max_len:
        raise InvalidInput(f"{label} must be at most {max_len} characters")
    return value or None


class PageRoute(APIRoute):
    """Domain errors as an HTML page (the JSON API keeps ``{"error": ...}``); no session:
    a redirect to sign in, or 401 for fragments and streams."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                if request.method == "GET" and not request.url.path.startswith("/ui/"):
                    query = request.url.query
                    target = request.url.path + (f"?{query}" if query else "")
                    return redirect(f"{SIGN_IN}?next={quote(target, safe='')}")
                return HTMLResponse("Sign in again.", status_code=401)
            except AgentyardError as exc:
                status = next((c for cls, c in STATUS.items() if isinstance(exc, cls)), 500)
                if request.url.path.startswith("/ui/"):
                    return page(request, "_error.html", status, message=exc.message)
                return page(request, "error.html", status, message=exc.message)

        return route
