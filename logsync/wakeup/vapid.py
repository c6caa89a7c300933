"""The server's VAPID key (RFC 8292): :meth:`VapidKey.load` reads the ``vapid_private_key``
setting — a PEM file path or the base64url raw 32-byte key —, :attr:`VapidKey.public_key` is
the ``applicationServerKey`` browsers subscribe with, :meth:`VapidKey.authorization` the signed
``Authorization`` header for one push service. :func:`generate_vapid_keys` makes a new pair
(``logsync vapid-keys``).

Unlike py-vapid's ``Vapid.from_file``, a missing file is an error, never a new key: a new key
would silently break every subscription made with the old one.
"""

from __future__ import annotations

import binascii
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from logsync.wakeup.registration import b64url, b64url_decode

# pywebpush's own choice; RFC 8292 §2 allows at most 24 h. A signed header is reused for half
# of it.
EXPIRY_S = 12 * 3600


class VapidKey:
    """A loaded VAPID private key with the ``sub`` claim it signs with."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, subject: str) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("a VAPID key must be a P-256 (prime256v1) key")
        self.vapid = Vapid02(private_key)
        self.subject = subject
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key = b64url(raw)
        # audience → (Authorization header, when to sign again)
        self._signed: dict[str, tuple[str, float]] = {}

    @classmethod
    def load(cls, value: str, subject: str) -> VapidKey:
        """From the setting: a PEM file, PEM text, or the base64url raw private key. Raises
        ValueError with a one-line reason."""
        text = value.strip()
        if not text.startswith("-----BEGIN"):
            path = Path(text)
            if path.suffix == ".pem" or "/" in text or path.is_file():
                try:
                    text = path.read_text()
                except OSError as error:
                    raise ValueError(f"vapid_private_key: cannot read {value}: {error}") from None
        if text.startswith("-----BEGIN"):
            try:
                key = serialization.load_pem_private_key(text.encode(), password=None)
            except ValueError as error:
                raise ValueError(f"vapid_private_key: not a PEM private key: {error}") from None
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("vapid_private_key: not an elliptic curve key")
            return cls(key, subject)
        try:
            raw = b64url_decode(text)
        except (binascii.Error, ValueError):
            raise ValueError("vapid_private_key: neither a PEM file nor base64url") from None
        if len(raw) != 32:
            raise ValueError("vapid_private_key: a raw key is 32 bytes (base64url)")
        return cls(ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1()), subject)

    def authorization(self, endpoint: str) -> str:
        """``vapid t=<JWT>,k=<public key>`` for the push service of ``endpoint`` (``aud`` is its
        origin), signed again once half of its 12 h has passed."""
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        signed = self._signed.get(audience)
        if signed is not None and signed[1] > now:
            return signed[0]
        # a fresh dict each time: py-vapid and pywebpush fill in claims they are given
        claims: dict[str, str | int] = {
            "sub": self.subject,
            "aud": audience,
            "exp": int(now) + EXPIRY_S,
        }
        header: str = self.vapid.sign(claims)["Authorization"]
        if len(self._signed) >= 1000:
            self._signed.clear()
        self._signed[audience] = (header, now + EXPIRY_S / 2)
        return header


def generate_vapid_keys() -> tuple[str, str]:
    """A new key pair: (the private key as PEM, the public ``applicationServerKey`` base64url)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, VapidKey(key, "mailto:admin@localhost").public_key
