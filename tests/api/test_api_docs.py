"""The API's docs: /docs and /redoc work offline, and /openapi.json explains and shows everything.

- The pages load nothing from another host (no CDN): every script, style and icon they name
  is served by the app itself, with its content type and a long cache.
- The OpenAPI document: every property of every schema has a description, every operation
  a description of its own (more than the scope it needs), every JSON request body and
  every 2xx JSON response an example, every error response an example, and every example
  is valid against its schema.

No database is needed: the app is built on one it never connects to.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import jsonschema_rs
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.api.app import create_app
from services.api.db import Database
from tests.helpers import settings_for_tests

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
SCOPE_NOTE = re.compile(r"\s*Needs an API key with scope `\w+` or above\.\s*$")
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
A_YEAR = 365 * 24 * 3600


@pytest.fixture
async def anonymous() -> AsyncIterator[httpx.AsyncClient]:
    """The app with access control on, called without a key."""
    engine = create_async_engine("postgresql+asyncpg://unset/unset", poolclass=NullPool)
    app = create_app(settings_for_tests(), database=Database(engine=engine))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http
    await engine.dispose()


class References(HTMLParser):
    """Every URL a page makes the browser load: script `src`, link `href`, ReDoc's `spec-url`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {"script": "src", "link": "href", "img": "src", "redoc": "spec-url"}
        for name, value in attrs:
            if name == names.get(tag) and value:
                self.urls.append(value)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    # Swagger UI is told its document in its inline script: `url: 'openapi.json'`.
    return parser.urls + re.findall(r"\burl: '([^']*)'", html)


# --- offline docs -----------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_nothing_from_another_host(anonymous: httpx.AsyncClient, page: str) -> None:
    response = await anonymous.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "cdn" not in html.lower() and "http://" not in html and "https://" not in html, html
    urls = references(html)
    assert len(urls) >= 3, urls  # the script, the icon, the document (and Swagger UI's styles)
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from another host"
        assert not url.startswith("/"), f"{url}: relative, so the page works under a proxy's root path too"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_every_asset_of_the_docs_pages_is_served(anonymous: httpx.AsyncClient, page: str) -> None:
    html = (await anonymous.get(page)).text
    for url in references(html):
        path = urlsplit(urljoin(f"http://test{page}", url)).path
        response = await anonymous.get(path)
        assert response.status_code == 200, (page, url, path, response.text[:200])
        assert response.content, path
        if path == "/openapi.json":
            assert response.json()["openapi"].startswith("3.1.")
            continue
        suffix = path[path.rfind(".") :]
        assert response.headers["content-type"].split(";")[0] == CONTENT_TYPES[suffix], (path, response.headers)
        max_age = re.search(r"max-age=(\d+)", response.headers["cache-control"])
        assert max_age and int(max_age.group(1)) >= A_YEAR, (path, response.headers["cache-control"])


async def test_only_the_docs_assets_are_served(anonymous: httpx.AsyncClient) -> None:
    html = (await anonymous.get("/docs")).text
    [script] = [url for url in references(html) if url.endswith("swagger-ui-bundle.js")]
    folder = script.rsplit("/", 1)[0]
    assert (await anonymous.get(f"/{folder}/swagger-ui-bundle.js")).status_code == 200
    for other in ("index.html", "__init__.py", "..%2F__init__.py", "swagger-ui-bundle.js.map"):
        assert (await anonymous.get(f"/{folder}/{other}")).status_code == 404, other
    # Another version's URL is not served: the cached files are never stale.
    assert (await anonymous.get("/docs/assets/0.0.0/swagger-ui-bundle.js")).status_code == 404


# --- the OpenAPI document ----------------------------------------------------------------------


@pytest.fixture
async def document(anonymous: httpx.AsyncClient) -> dict[str, Any]:
    response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield f"{method.upper()} {path}", operation


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node and set(node) == {"$ref"}:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def examples_of(media: dict[str, Any]) -> list[Any]:
    """The examples of a media type object: `example`, or each of `examples`."""
    found = [media["example"]] if "example" in media else []
    return found + [example["value"] for example in media.get("examples", {}).values()]


def json_media(content: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for media_type, media in content.items():
        if media_type == "application/json" or media_type.endswith("+json"):
            yield media_type, media


def test_every_schema_property_has_a_description(document: dict[str, Any]) -> None:
    missing = [
        f"{name}.{prop}"
        for name, schema in document["components"]["schemas"].items()
        for prop, spec in schema.get("properties", {}).items()
        if not spec.get("description", "").strip()
    ]
    assert not missing, f"{len(missing)} properties without a description: {missing}"


def test_every_operation_has_a_description(document: dict[str, Any]) -> None:
    # The note on the scope a route needs is added to every description: it is not one.
    missing = [label for label, op in operations(document) if not SCOPE_NOTE.sub("", op.get("description", "")).strip()]
    assert not missing, f"operations without a description: {missing}"


def test_every_json_request_body_has_an_example(document: dict[str, Any]) -> None:
    missing = [
        f"{label} {media_type}"
        for label, op in operations(document)
        for media_type, media in json_media(op.get("requestBody", {}).get("content", {}))
        if not examples_of(media)
    ]
    assert not missing, f"request bodies without an example: {missing}"


def test_every_successful_json_response_has_an_example(document: dict[str, Any]) -> None:
    missing, seen = [], 0
    for label, op in operations(document):
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            for media_type, media in json_media(resolve(document, response).get("content", {})):
                seen += 1
                if not examples_of(media):
                    missing.append(f"{label} {status} {media_type}")
    assert seen > 30
    assert not missing, f"2xx responses without an example: {missing}"


def test_every_error_response_has_an_example(document: dict[str, Any]) -> None:
    missing, seen = [], 0
    for label, op in operations(document):
        for status, response in op["responses"].items():
            if status[0] not in "45":
                continue
            content = resolve(document, response).get("content", {})
            assert content, f"{label} {status} has no content"
            for media_type, media in content.items():
                seen += 1
                if not examples_of(media):
                    missing.append(f"{label} {status} {media_type}")
    assert seen > 100
    assert not missing, f"error responses without an example: {missing}"


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator of `schema` whose `$ref`s reach the document's components."""
    root = {**schema, "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


def every_example(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every example in the document."""
    for name, schema in document["components"]["schemas"].items():
        for i, example in enumerate(schema.get("examples", [])):
            yield f"schemas.{name}.examples[{i}]", {"$ref": f"#/components/schemas/{name}"}, example
    for name, response in document["components"].get("responses", {}).items():
        for media_type, media in response.get("content", {}).items():
            for example in examples_of(media):
                yield f"responses.{name} {media_type}", media["schema"], example
    for label, op in operations(document):
        places = [("request", op.get("requestBody", {}))]
        places += [(status, response) for status, response in op["responses"].items() if "$ref" not in response]
        for where, place in places:
            for media_type, media in place.get("content", {}).items():
                for example in examples_of(media):
                    if "schema" in media:
                        yield f"{label} {where} {media_type}", media["schema"], example


def test_every_example_is_valid_against_its_schema(document: dict[str, Any]) -> None:
    checked, invalid = 0, []
    for where, schema, example in every_example(document):
        checked += 1
        errors = [
            f"{'/'.join(map(str, e.instance_path))}: {e.message}"
            for e in validator(document, schema).iter_errors(example)
        ]
        if errors:
            invalid.append(f"{where}: {errors[:3]}")
    assert checked > 60
    assert not invalid, "\n".join(invalid)
