"""The console's entry: sign-in and sign-out, its routes, and the answers to its own
exceptions (no session, a missing CSRF token, a read-only key).

The pages themselves live in `agents.py`, `history.py` and `experiments.py`. The API's
errors on console paths are the console's error page (`web.error_page`): `errors.install`
picks it by route, handed in by the app.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from services.api.access.gate import FAILURES, client_address
from services.api.access.keyring import KeyRefused, KeyRing
from services.api.access.rate_limit import RateLimiter
from services.api.console import agents, experiments, history, targeting
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
    error_page,
    form_of,
    new_csrf,
    render,
    same_token,
    see_other,
)
from services.api.exceptions import NotFound

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
    return FileResponse(
        HERE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "public, max-age=300"}
    )


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request, error=None)


def _sign_in_page(request: Request, *, error: str | None, status_code: int = 200) -> Response:
    token = new_csrf()
    response = render(
        request,
        "sign_in.html",
        status_code=status_code,
        csrf=token,
        error=error,
        auth_disabled=request.app.state.auth_disabled,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=f"{PREFIX}/sign-in",
        max_age=3600,
    )
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
        # Rationed like the API's refused keys, from the same allowance per client address:
        # past it, the key is not even checked.
        refusals: RateLimiter = request.app.state.refused_keys
        client = client_address(request.scope)
        wait = refusals.blocked(client, FAILURES)
        if wait is not None:
            response = _sign_in_page(
                request, error=f"Too many sign-ins with keys that do not work; retry in {wait} s.", status_code=429
            )
            response.headers["Retry-After"] = str(wait)
            return response
        try:
            key = await ring.verify(form.get("key", "").strip().encode("utf-8", "surrogateescape"))
        except KeyRefused as refused:
            refusals.take(client, FAILURES)
            return _sign_in_page(request, error=str(refused), status_code=401)
        if key.scope not in CONSOLE_SCOPES:
            return _sign_in_page(
                request,
                error=f"The API key '{key.name}' has the scope '{key.scope}', which is for"
                " agents: the console needs read or above.",
                status_code=403,
            )
        key_id = key.id
    await close_session(db, request.cookies.get(SESSION_COOKIE))  # a browser holds one session at a time
    token = await open_session(db, key_id)
    response = see_other(f"{PREFIX}/agents")
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path=PREFIX)
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
for pages in (history.router, experiments.router, targeting.router, agents.router):
    router.include_router(pages)


def install(app: FastAPI) -> None:
    """The console's routes and the answers its own exceptions get."""
    app.include_router(router)

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        # The cookie is left alone: a link followed from another site arrives without the
        # SameSite=Strict cookie, and deleting it then would sign out a valid session.
        return see_other(f"{PREFIX}/sign-in")

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        return error_page(
            request,
            403,
            "Refused",
            "This form was not sent by the console (its CSRF token is missing"
            " or wrong). Reload the page and try again.",
        )

    async def forbidden(request: Request, exc: Exception) -> Response:
        return error_page(request, 403, "Read only", "Your API key can read but not change anything.")

    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    app.add_exception_handler(Forbidden, forbidden)
