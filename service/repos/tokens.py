"""Bearer secrets (API keys, device tokens): random, stored only as a sha256 hash plus a short prefix
that users see and that finds the row; the hash is compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

# Shown to users (list-keys, revoke-key): the type tag plus 8 random characters.
PREFIX_LEN = 12


@dataclass(frozen=True)
class NewSecret:
    plaintext: str
    prefix: str
    hash: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret(tag: str) -> NewSecret:
    plaintext = f"{tag}_{secrets.token_urlsafe(32)}"
    return NewSecret(plaintext=plaintext, prefix=plaintext[:PREFIX_LEN], hash=hash_secret(plaintext))


def secret_prefix(secret: str) -> str:
    return secret[:PREFIX_LEN]


def matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
