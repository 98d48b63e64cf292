"""Request signing as the simulator checks it, and the documented test keys.

REST (HMAC-SHA256): the signed text is the raw query string concatenated with the raw body,
exactly as sent, with the `signature` parameter taken out (Binance: "totalParams"). WS API: every
parameter except `signature`, sorted by name, joined `k=v` with `&`. Ed25519 signatures (WS API
`session.logon`, and REST/WS requests signed with the Ed25519 key) are base64 over the same text.

The keys below are public on purpose: they let anyone point a client at the local simulator.
They must never be accepted by anything but the simulator. Pure logic: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote, unquote, unquote_plus

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# HMAC test credentials (64 characters each, like Binance's).
TEST_API_KEY = "hftbotSimTestApiKey" + "0" * 45
TEST_API_SECRET = "hftbotSimTestSecret" + "1" * 45
# Ed25519 test credentials: the API key Binance would assign to the registered public key.
TEST_ED25519_API_KEY = "hftbotSimTestEd25519Key" + "2" * 41
_ED_SEED = hashlib.sha256(b"hftbot local simulator Ed25519 test key").digest()
_ED_PRIVATE = Ed25519PrivateKey.from_private_bytes(_ED_SEED)
TEST_ED25519_PRIVATE_PEM = _ED_PRIVATE.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
TEST_ED25519_PUBLIC_PEM = (
    _ED_PRIVATE.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


class KeyRing:
    """API keys the venue knows: HMAC secrets and Ed25519 public keys, by API key."""

    def __init__(self) -> None:
        self.hmac: dict[str, bytes] = {TEST_API_KEY: TEST_API_SECRET.encode()}
        self.ed25519: dict[str, Ed25519PublicKey] = {TEST_ED25519_API_KEY: _ED_PRIVATE.public_key()}

    def known(self, api_key: str) -> bool:
        return api_key in self.hmac or api_key in self.ed25519

    def verify(self, api_key: str, payloads: list[str], signature: str) -> bool:
        """True when `signature` signs any of the candidate payload texts with this key."""
        secret = self.hmac.get(api_key)
        if secret is not None:
            sig = signature.lower()
            for p in payloads:
                mac = hmac.new(secret, p.encode(), hashlib.sha256).hexdigest()
                if hmac.compare_digest(mac, sig):
                    return True
            return False
        pub = self.ed25519.get(api_key)
        if pub is None:
            return False
        # base64 may arrive URL-encoded (REST) or as is (WS API, where '+' is literal)
        for text in dict.fromkeys((signature, unquote(signature), unquote_plus(signature))):
            try:
                raw = base64.b64decode(text, validate=True)
            except (ValueError, TypeError):
                continue
            for p in payloads:
                try:
                    pub.verify(raw, p.encode())
                    return True
                except InvalidSignature:
                    continue
        return False


def strip_signature(text: str) -> tuple[str, str | None]:
    """Remove the `signature=` parameter from a raw query/body; returns (rest, signature)."""
    if not text:
        return text, None
    parts = text.split("&")
    keep, sig = [], None
    for part in parts:
        if part.startswith("signature="):
            sig = part[len("signature=") :]
        else:
            keep.append(part)
    return "&".join(keep), sig


def rest_payload(query: str, body: str) -> tuple[str, str | None]:
    """The text a REST signature covers (query + body as sent, signature removed) and the signature."""
    q, sig_q = strip_signature(query)
    b, sig_b = strip_signature(body)
    return q + b, sig_q or sig_b


def _ws_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(v)
    return str(v)


def ws_payloads(params: dict) -> list[str]:
    """Candidate signed texts for a WS API request: raw `k=v` and URL-encoded, sorted by name."""
    items = sorted((k, _ws_value(v)) for k, v in params.items() if k != "signature")
    raw = "&".join(f"{k}={v}" for k, v in items)
    enc = "&".join(f"{k}={quote(v, safe='')}" for k, v in items)
    return [raw] if raw == enc else [raw, enc]


def sign_hmac(secret: str, payload: str) -> str:
    """Client-side helper (tests, docs): hex HMAC-SHA256."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def sign_ed25519(private_pem: str, payload: str) -> str:
    """Client-side helper (tests, docs): base64 Ed25519."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return base64.b64encode(key.sign(payload.encode())).decode()
