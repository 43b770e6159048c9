"""Sign-in with an API key, sign-out, and the settings page (GitHub, API keys)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from agentyard.core.errors import InvalidInput
from agentyard.web.common import (
    SIGN_IN,
    PageRoute,
    Viewer,
    form_of,
    local_target,
    page,
    redirect,
    sessions,
    set_cookie,
    signed_in,
    text_field,
    viewer,
    yard,
)
from agentyard.web.session import CSRF_COOKIE, SESSION_COOKIE, Sessions

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get(SIGN_IN)
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    target = local_target(next)
    if await signed_in(request) is not None:
        return redirect(target or "/")
    return page(request, "signin.html", next=target)


@router.post(SIGN_IN)
async def sign_in(request: Request) -> Response:
    data = await form_of(request)
    holder = await yard(request).keys.identify(data.get("apiKey", "")[:500])
    target = local_target(data.get("next"))
    if holder is None:
        return page(
            request,
            "signin.html",
            401,
            error="That API key is not valid, or it has been revoked.",
            next=target,
        )
    jar = sessions(request)
    response = redirect(target or "/")
    set_cookie(
        response,
        request,
        SESSION_COOKIE,
        jar.issue(holder.key_id),
        int(jar.lifetime_seconds),
    )
    # A new CSRF cookie with the new session: one planted before sign-in is worth nothing.
    set_cookie(response, request, CSRF_COOKIE, Sessions.new_csrf_cookie(), None)
    return response


@router.post("/signout")
async def sign_out(request: Request) -> Response:
    await form_of(request)
    sessions(request).end(request.cookies.get(SESSION_COOKIE))
    response = redirect(SIGN_IN)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    set_cookie(response, request, CSRF_COOKIE, Sessions.new_csrf_cookie(), None)
    return response


async def _settings(
    request: Request,
    user: Viewer,
    code: int = 200,
    error: str | None = None,
    notice: str | None = None,
    new_key: str | None = None,
) -> Response:
    app = yard(request)
    return page(
        request,
        "settings.html",
        code,
        github=await app.git.config(user.user_id),
        keys=await app.keys.list(user.user_id),
        current_key=user.key_id,
        error=error,
        notice=notice,
        new_key=new_key,
    )


@router.get("/settings")
async def settings_page(request: Request, user: Viewer = Depends(viewer)) -> Response:
    return await _settings(request, user)


@router.post("/settings/github")
async def connect_github(request: Request, user: Viewer = Depends(viewer)) -> Response:
    data = await form_of(request)
    try:
        token = text_field(data, "githubToken", "The GitHub token", 1000) or ""
        result = await yard(request).git.connect(user.user_id, token)
    except InvalidInput as exc:
        return await _settings(request, user, 400, error=exc.message)
    return await _settings(request, user, notice=f"Connected to GitHub as {result['login']}.")


@router.post("/settings/github/disconnect")
async def disconnect_github(request: Request, user: Viewer = Depends(viewer)) -> Response:
    await form_of(request)
    await yard(request).git.disconnect(user.user_id)
    return redirect("/settings")


@router.post("/settings/keys")
async def create_key(request: Request, user: Viewer = Depends(viewer)) -> Response:
    data = await form_of(request)
    try:
        _, secret = await yard(request).keys.create(user.user_id, data.get("name", ""))
    except InvalidInput as exc:
        return await _settings(request, user, 400, error=exc.message)
    # Shown on this response only: it is stored as a hash.
    return await _settings(request, user, new_key=secret)


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    await form_of(request)
    await yard(request).keys.revoke(user.user_id, key_id)
    return redirect("/settings" if key_id != user.key_id else SIGN_IN)
