"""API key format: generation, validation of shape, digest and display prefix.

Only the SHA-256 digest and a short display prefix are ever stored or logged.
"""

from __future__ import annotations

import hashlib
import secrets
import string

KEY_PREFIX = "pk_live_"
KEY_RANDOM_LENGTH = 40
DISPLAY_LENGTH = len(KEY_PREFIX) + 4
_BASE62 = string.ascii_letters + string.digits
_BASE62_SET = frozenset(_BASE62)


def generate_key() -> str:
    """A new key: ``pk_live_`` and 40 random base62 characters (~238 bits)."""
    return KEY_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(KEY_RANDOM_LENGTH))


def is_well_formed(key: str) -> bool:
    """Cheap shape check, so malformed keys never cost a database lookup."""
    if not key.startswith(KEY_PREFIX):
        return False
    body = key[len(KEY_PREFIX) :]
    return len(body) >= 32 and len(body) <= 128 and _BASE62_SET.issuperset(body)


def digest(key: str) -> str:
    """Hex SHA-256 of the key: what the database stores and looks up by."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key that may be shown and logged, e.g. ``pk_live_Ab3x``."""
    return key[:DISPLAY_LENGTH]
