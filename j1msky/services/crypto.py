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


class DataKey:
    """The key for encrypt_output: J1MSKY_DATA_KEY (base64 of 32 bytes) when set, else
    instance/data.key, made with 0600 rights the first time it is needed."""

    def __init__(self, instance_path: str, environ=os.environ):
        self.path = os.path.join(instance_path, "data.key")
        self.environ = environ
        self.key: bytes | None = None

    def get(self) -> bytes:
        if self.key is None:
            self.key = self._from_env() or self._from_file()
        return self.key

    def _from_env(self) -> bytes | None:
        value = self.environ.get("J1MSKY_DATA_KEY")
        if not value:
            return None
        key = base64.b64decode(value)
        if len(key) != 32:
            raise ValueError("J1MSKY_DATA_KEY must be the base64 of 32 bytes")
        return key

    def _from_file(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            with open(self.path, "rb") as fh:
                return base64.b64decode(fh.read())
        key = AESGCM.generate_key(bit_length=256)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(key))
        return key
