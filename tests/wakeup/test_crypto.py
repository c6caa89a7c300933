"""The crypto layer Web Push rests on: the RFC 8291 Appendix A test vector through ``http_ece``
(decrypt, and the deterministic encrypt), and the VAPID key as the settings give it."""

from __future__ import annotations

from pathlib import Path

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from logsync.wakeup import VapidKey, generate_vapid_keys
from logsync.wakeup.registration import b64url, b64url_decode

# RFC 8291 Appendix A
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
AUTH_SECRET = "BTBZMqHH6r4Tts7J_aSIgg"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
PLAINTEXT = b"When I grow up, I want to be a watermelon"
CIPHERTEXT = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6T"
    "lzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy"
    "4a-fN"
)


def private_key(b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(b64), "big"), ec.SECP256R1())


def test_rfc8291_vector_decrypts() -> None:
    plain = http_ece.decrypt(
        b64url_decode(CIPHERTEXT),
        private_key=private_key(UA_PRIVATE),
        auth_secret=b64url_decode(AUTH_SECRET),
        version="aes128gcm",
    )
    assert plain == PLAINTEXT


def test_rfc8291_vector_encrypts_deterministically() -> None:
    encrypted = http_ece.encrypt(
        PLAINTEXT,
        salt=b64url_decode(SALT),
        private_key=private_key(AS_PRIVATE),
        dh=b64url_decode(UA_PUBLIC),
        auth_secret=b64url_decode(AUTH_SECRET),
        version="aes128gcm",
        rs=4096,
    )
    assert len(encrypted) == 144
    assert b64url(encrypted) == CIPHERTEXT


def test_the_vapid_key_loads_from_a_pem_file_pem_text_or_raw(tmp_path: Path) -> None:
    pem, public_key = generate_vapid_keys()
    path = tmp_path / "vapid.pem"
    path.write_text(pem)
    from_file = VapidKey.load(str(path), "mailto:a@example.com")
    assert from_file.public_key == public_key
    assert VapidKey.load(pem, "mailto:a@example.com").public_key == public_key
    raw = from_file.vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    assert VapidKey.load(b64url(raw), "mailto:a@example.com").public_key == public_key
    header = from_file.authorization("https://push.example.net/send/xyz")
    assert Vapid02.verify(header) and header.endswith(f",k={public_key}")
    # signed once per push service for a while, not per message
    assert from_file.authorization("https://push.example.net/send/other") == header


def test_a_missing_or_bad_vapid_key_is_refused_never_made(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match="cannot read"):
        VapidKey.load(str(missing), "mailto:a@example.com")
    assert not missing.exists()  # py-vapid's from_file would have made a new key here
    with pytest.raises(ValueError, match="32 bytes"):
        VapidKey.load("c2hvcnQ", "mailto:a@example.com")
    rsa_like = tmp_path / "bad.pem"
    rsa_like.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="not a PEM private key"):
        VapidKey.load(str(rsa_like), "mailto:a@example.com")
