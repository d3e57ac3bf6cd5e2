"""Consumer data: sealed at rest with the library's AES cipher (rule P2), masked for suppliers (P1)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol

import msgspec

from engine.base import Value
from engine.values import Buyer


class Cipher(Protocol):
    def encrypt(self, plaintext: bytes) -> bytes: ...
    def decrypt(self, ciphertext: bytes) -> bytes: ...


class Recipient(Value, frozen=True):
    """What a supplier may see of the consumer (rule P1)."""

    name: str
    phone: str
    province: str
    city: str
    district: str
    address: str


_buyer_decoder = msgspec.json.Decoder(Buyer)


def seal(cipher: Cipher, buyer: Buyer) -> bytes:
    return cipher.encrypt(msgspec.json.encode(buyer))


def unseal(cipher: Cipher, sealed: bytes) -> Buyer:
    return _buyer_decoder.decode(cipher.decrypt(sealed))


def mask_name(name: str) -> str:
    name = name.strip()
    if not name:
        return "*"
    return name[0] + "*" * max(1, len(name) - 1)


def mask_phone(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) >= 7:
        return digits[:3] + "****" + digits[-4:]
    return "*" * max(4, len(digits))


def mask(buyer: Buyer) -> Recipient:
    """Name `张*`, phone `138****5678`, address down to district, the street masked."""
    return Recipient(
        name=mask_name(buyer.name),
        phone=mask_phone(buyer.phone),
        province=buyer.province,
        city=buyer.city,
        district=buyer.district,
        address="****",
    )


def recipient_token(key: bytes, order_key: str, sealed: bytes) -> str:
    """An opaque token the shop's e-waybill service resolves to the real recipient.

    Keyed (HMAC) so a supplier cannot derive it, and bound to the address version so a changed
    address (rule I4) yields a new token."""
    digest = hmac.new(key, order_key.encode() + b"\x1f" + sealed, hashlib.sha256).hexdigest()
    return "rt_" + digest[:32]


class Keys:
    """What seals consumer data (P2) and makes recipient tokens (P1), and whose shops are whose.

    Built by the application from its cipher key; handed to every unit of work."""

    def __init__(self, cipher: Cipher, key: str, default_merchant: str = "default") -> None:
        self.cipher = cipher
        self.token_key = hashlib.sha256(b"reflow-recipient-token\x1f" + key.encode()).digest()
        self.default_merchant = default_merchant

    def seal(self, buyer: Buyer) -> bytes:
        return seal(self.cipher, buyer)

    def unseal(self, sealed: bytes) -> Buyer:
        return unseal(self.cipher, sealed)

    def encrypt(self, text: str) -> bytes:
        return self.cipher.encrypt(text.encode())
