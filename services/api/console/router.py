"""The console's entry: sign-in and sign-out, and the error pages every console page shares.

The pages themselves live in `agents.py`, `history.py` and `experiments.py`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from services.api.access.keyring import KeyRefused, KeyRing
from services.api.console import agents, experiments, history
from services.api.console.sessions import CONSOLE_SCOPES, close_session, open_session, viewer_of
from services.api.console.web import (
    HERE,
    PREFIX,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    CsrfRefused,
    Forbidden,
    SignInRequired,
    db_of,
    form_of,
    new_csrf,
    refusal,
    render,
    same_token,
    see_other,
)
from services.api.errors import PROBLEMS
from services.api.exceptions import DomainError, NotFound
from services.shared.agent_config import AgentNotFound, VariantNotFound

router = APIRouter(prefix=PREFIX, include_in_schema=False)
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("")
async def home() -> Response:
    return RedirectResponse(f"{PREFIX}/agents", status_code=303)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        raise NotFound("File", name)
    return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                        headers={"Cache-Control": "public, max-age=300"})


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request, error=None)


def _sign_in_page(request: Request, *, error: str | None, status_code: int = 200) -> Response:
    token = new_csrf()
    response = render(request, "sign_in.html", status_code=status_code, csrf=token, error=error,
                      auth_disabled=request.app.state.auth_disabled)
    response.set_cookie(SIGN_IN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request),
                        path=f"{PREFIX}/sign-in", max_age=3600)
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await form_of(request)
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not same_token(form.get("csrf", ""), expected):
        return _sign_in_page(request, error="The form expired; please sign in again.", status_code=403)
    db = db_of(request)
    if request.app.state.auth_disabled:
        key_id = None
    else:
        ring: KeyRing = request.app.state.key_ring
        try:
            key = await ring.verify(form.get("key", "").strip().encode("utf-8", "surrogateescape"))
        except KeyRefused as refused:
            return _sign_in_page(request, error=str(refused), status_code=401)
        if key.scope not in CONSOLE_SCOPES:
            return _sign_in_page(request, error=f"The API key '{key.name}' has the scope '{key.scope}', which is for"
                                 " agents: the console needs read or above.", status_code=403)
        key_id = key.id
    await close_session(db, request.cookies.get(SESSION_COOKIE))  # a browser holds one session at a time
    token = await open_session(db, key_id)
    response = see_other(f"{PREFIX}/agents")
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request),
                        path=PREFIX)
    response.delete_cookie(SIGN_IN_COOKIE, path=f"{PREFIX}/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    who = await viewer_of(db_of(request), token, auth_disabled=request.app.state.auth_disabled)
    form = await form_of(request)
    if who is not None and not same_token(form.get("csrf", ""), who.csrf_token):
        raise CsrfRefused
    response = see_other(f"{PREFIX}/sign-in")
    if who is None:
        # No session came with it (a form posted from another site arrives without the
        # SameSite=Strict cookie): deleting the cookie would sign out whoever holds it.
        return response
    await close_session(db_of(request), token)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


# History first: its `./variants/{variant}/restore` is more specific than the agents pages' `{action}`.
for pages in (history.router, experiments.router, agents.router):
    router.include_router(pages)


def install(app: object) -> None:
    """The console's routes and the answers its own exceptions get."""
    from fastapi import FastAPI

    assert isinstance(app, FastAPI)
    app.include_router(router)

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        # The cookie is left alone: a link followed from another site arrives without the
        # SameSite=Strict cookie, and deleting it then would sign out a valid session.
        return see_other(f"{PREFIX}/sign-in")

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        return refusal(403, "Refused", "This form was not sent by the console (its CSRF token is missing or"
                       " wrong). Reload the page and try again.", request)

    async def forbidden(request: Request, exc: Exception) -> Response:
        return refusal(403, "Read only", "Your API key can read but not change anything.", request)

    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    app.add_exception_handler(Forbidden, forbidden)

    # The API's errors are problem+json; on a console page the same error is a page.
    for kind in (DomainError, AgentNotFound, VariantNotFound):
        api_handler = app.exception_handlers[kind]

        async def either(request: Request, exc: Exception, api_handler: Any = api_handler) -> Response:
            if not request.url.path.startswith(PREFIX + "/"):
                return await api_handler(request, exc)
            code = getattr(exc, "code", "resource_missing")
            status = PROBLEMS[code].status if code in PROBLEMS else 404
            return refusal(status, PROBLEMS[code].title if code in PROBLEMS else "Not found", str(exc), request)

        app.add_exception_handler(kind, either)
