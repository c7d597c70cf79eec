"""Response headers that keep browsers from misusing what the API returns.

The API serves JSON only: nothing may sniff it as another type, frame it, leak the URL in
a Referer, or run anything from it. The interactive docs (`/docs`, `/redoc`) are HTML
that loads Swagger UI or ReDoc from this service: they get all but the JSON's content
security policy, and carry their own (`docs_policy`, set by `api_docs.py`).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# What every JSON response carries. Responses made before FastAPI runs (cache hits, the
# access gate's refusals) include these themselves; `SecurityHeaders` adds them to the rest.
JSON_HEADERS = (*HEADERS, CSP)
JSON_HEADERS_DICT = {name.decode(): value.decode() for name, value in JSON_HEADERS}
_HTML_PAGES = ("/docs", "/redoc")
# The console's pages: our own styles, scripts and inline SVG; nothing from elsewhere.
CONSOLE = "/console"
CONSOLE_CSP = (
    b"content-security-policy",
    b"default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self';"
    b" frame-ancestors 'none'; base-uri 'none'",
)
CONSOLE_HEADERS = (*HEADERS, CONSOLE_CSP)


def docs_policy(*, script_hashes: Iterable[str], inline_styles: bool = False) -> str:
    """The API docs' pages: scripts, styles, images and the OpenAPI document from this service
    only, plus the page's own inline scripts by hash (`'sha256-...'`). ReDoc writes its
    styles into <style> elements at run time (`inline_styles`) and searches in a worker
    made from a blob."""
    scripts = " ".join(("'self'", *script_hashes))
    styles = "'self' 'unsafe-inline'" if inline_styles else "'self'"
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; img-src 'self' data:;"
        " connect-src 'self'; worker-src blob:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._all = JSON_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = get_route_path(scope)
        extra: tuple[tuple[bytes, bytes], ...]
        if path.startswith(_HTML_PAGES):
            extra = HEADERS
        elif path == CONSOLE or path.startswith(CONSOLE + "/"):
            extra = CONSOLE_HEADERS
        else:
            extra = self._all

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
