"""API keys in openpi-client's header form (`Authorization: Api-Key <key>`): reading, making and checking them."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

API_KEY_ENV = "VLA_ROS_API_KEY"
HEADER = "authorization"
SCHEME = "Api-Key"
MAX_KEY_CHARS = 256


class ApiKeyError(ValueError):
    """An API key file or value that cannot be used; the message names it."""


def _checked(key: str, where: str) -> str:
    key = key.strip()
    if not key:
        raise ApiKeyError(f"{where} holds no API key (it is empty)")
    if len(key) > MAX_KEY_CHARS or not key.isprintable() or any(c.isspace() for c in key):
        raise ApiKeyError(f"{where} does not hold one API key: at most {MAX_KEY_CHARS} printable characters without "
                        "spaces are accepted")
    return key


def read_api_key(path: str | os.PathLike) -> str:
    """The key in a file (surrounding whitespace ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeyError(f"API key file {path} cannot be read ({exc.__class__.__name__}: {exc})") from None
    return _checked(text, f"API key file {path}")


def key_from_environment() -> str | None:
    value = os.environ.get(API_KEY_ENV)
    return None if value is None else _checked(value, f"environment variable {API_KEY_ENV}")


def client_api_key(path: str) -> str | None:
    """The robot's key: the file when given, else the environment variable, else none."""
    return read_api_key(path) if path else key_from_environment()


def new_api_key() -> str:
    """A fresh key: 32 random bytes, URL-safe text."""
    return secrets.token_urlsafe(32)


def authorization_header(key: str) -> dict[str, str]:
    return {"Authorization": f"{SCHEME} {key}"}


def presented_key(header_value: str | None) -> str | None:
    """The key an `Authorization` header carries in the Api-Key form, or None."""
    if not header_value:
        return None
    scheme, _, key = header_value.strip().partition(" ")
    return key.strip() or None if scheme.lower() == SCHEME.lower() else None


def key_digest(key: str) -> str:
    """What a server keeps of its key (SHA-256, hex): the key itself never travels to the replicas."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(header_value: str | None, expected_digest: str) -> bool:
    """Whether the header carries the key whose digest is `expected_digest` (compared in constant time)."""
    given = presented_key(header_value)
    return given is not None and hmac.compare_digest(key_digest(given), expected_digest)
