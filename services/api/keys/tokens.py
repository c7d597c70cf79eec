"""API key secrets: how they look, and the one-way digest that is all we store.

A secret is `avk_` and 43 base62 characters (256 random bits): the prefix lets secret
scanners and people recognise it; base62 keeps it one double-clickable word. Secrets
this long are never guessed, so a plain SHA-256 is the right digest (a slow password hash
would only slow every request down, and nothing is gained against a 256-bit secret).
"""

from __future__ import annotations

import hashlib
import secrets
import string

PREFIX = "avk_"
_ALPHABET = string.ascii_letters + string.digits
_LENGTH = 43  # 62**43 > 2**256


def new_secret() -> str:
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))


def digest(secret: str) -> bytes:
    """The 32-byte SHA-256 of the secret: what the database and the key ring hold."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()
