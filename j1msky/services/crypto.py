"""AES-256-GCM sealing of secrets at rest (the cryptography package)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose, from the instance master secret."""
    return hmac.new(master, purpose.encode(), hashlib.sha256).digest()


def seal(key: bytes, text: str) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, text.encode(), None)).decode()


def unseal(key: bytes, token: str) -> str:
    raw = base64.b64decode(token)
    return AESGCM(key).decrypt(raw[:12], raw[12:], None).decode()
