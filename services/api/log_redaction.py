"""Secrets never reach a log: every line the process writes is redacted as it is formatted.

Keys belong in the `Authorization` header, but people paste them into URLs
(`?api_key=avk_...`), and uvicorn's access log prints the request line with its query
string (at `trace`, every request's ASGI scope). Redacting the formatted line, not the
record's arguments, covers every logger and every form: messages, arguments, tracebacks.
The CLI gives every handler of the process one of these formatters (`cli.logging_config`).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

import uvicorn.logging

REDACTED = "[redacted]"
# One of our key secrets (`avk_` and base62, see keys/tokens.py), raw or percent-encoded,
# wherever it appears: a query value, a path segment, a message.
_KEY_SECRET = re.compile(r"avk(?:_|%5f)[0-9a-z]+", re.IGNORECASE)
# `name=value` as in a query string or a cookie; the name decides whether the value goes.
_PARAMETER = re.compile(r"(?<![\w.%-])([\w.%-]+)=([^&\s'\"#;,]*)")
# Names that carry credentials, after percent-decoding, lowercasing and `-` -> `_`:
# `api_key`, `apikey`, `key`, `x_api_key`, `token`, `access_token`, `client_secret`,
# `password`, `av_session`, `signature`, ...
_CREDENTIAL_NAME = re.compile(
    r"(?:^|_)(?:api_?key|key|token|secret|password|passwd|pwd|auth|authorization|credentials?|jwt"
    r"|session|session_?id|sig|signature)$"
)
# A credential spelled as an Authorization header value.
_AUTHORIZATION = re.compile(r"\b(bearer|basic)(\s+|%20|\+)[A-Za-z0-9._~+/%-]{8,}=*", re.IGNORECASE)


def _parameter(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    if value and _CREDENTIAL_NAME.search(unquote(name).lower().replace("-", "_")):
        return f"{name}={REDACTED}"
    return match.group(0)


def redact(text: str) -> str:
    """`text` with every credential-looking value replaced by `[redacted]`."""
    text = _KEY_SECRET.sub("avk_" + REDACTED, text)
    text = _PARAMETER.sub(_parameter, text)
    return _AUTHORIZATION.sub(lambda match: f"{match.group(1)} {REDACTED}", text)


class Formatter(logging.Formatter):
    """The standard formatter, redacting: for the app's own lines (the root logger)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class DefaultFormatter(uvicorn.logging.DefaultFormatter):
    """uvicorn's formatter for its own lines (`uvicorn`, `uvicorn.error`, `uvicorn.asgi`), redacting."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class AccessFormatter(uvicorn.logging.AccessFormatter):
    """uvicorn's access log line, its request line redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
