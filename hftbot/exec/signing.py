"""Request signing for the Binance USDⓈ-M APIs: HMAC-SHA256 per request, Ed25519 for `session.logon`.

What is signed (../shared/reference/binance-usdm.md, "Signing"):

- WS API: every parameter except `signature`, sorted by name, joined `k=v` with `&` (values as
  sent: strings stay strings, integers as digits, booleans as `true`/`false`);
- REST: the query string exactly as sent (we send every parameter in the query, none in the body).

HMAC gives a lowercase hex digest; Ed25519 a base64 signature (URL-encoded when it travels in a
query string). One API key has one type at Binance, so a `Signer` holds the key and either the
HMAC secret or the Ed25519 private key, never both in use: `kind` says which.

Secrets live only inside the `Signer`; its repr masks them and nothing here logs. Pure logic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HMAC = "hmac"
ED25519 = "ed25519"


class SigningError(ValueError):
    """Credentials that cannot sign (missing, or a key file that is not an Ed25519 key)."""


def ws_value(v: object) -> str:
    """A WS API parameter as it appears in the signed text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def ws_payload(params: dict) -> str:
    """The text a WS API signature covers: params but `signature`, sorted by name, `k=v&...`."""
    return "&".join(f"{k}={ws_value(params[k])}" for k in sorted(params) if k != "signature")


def rest_query(params: dict) -> str:
    """A REST query string in the order given (the signature covers exactly this text)."""
    return urlencode({k: ws_value(v) for k, v in params.items()})


def load_ed25519_key(pem_or_path: str) -> Ed25519PrivateKey:
    """A PKCS#8 PEM text, or a path to a PEM file, as an Ed25519 private key."""
    text = pem_or_path.strip()
    if "-----BEGIN" not in text:
        path = Path(text).expanduser()
        if not path.is_file():
            # the value itself may be key material: never echo it
            raise SigningError("ed25519 private key: not a PEM text and not a path to an existing file")
        text = path.read_text()
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as e:
        raise SigningError(
            f"ed25519 private key: not a readable unencrypted PEM key ({type(e).__name__})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"ed25519 private key: the PEM holds a {type(key).__name__}, not an Ed25519 key")
    return key


class Signer:
    """An API key with the one secret that signs for it."""

    def __init__(self, api_key: str, *, hmac_secret: str = "", ed25519_key: str = "") -> None:
        if not api_key:
            raise SigningError("signer: no API key")
        if bool(hmac_secret) == bool(ed25519_key):
            raise SigningError("signer: give exactly one of an HMAC secret and an Ed25519 private key")
        self.api_key = api_key
        self.kind = HMAC if hmac_secret else ED25519
        self._secret = hmac_secret.encode() if hmac_secret else b""
        self._ed = load_ed25519_key(ed25519_key) if ed25519_key else None

    def __repr__(self) -> str:
        return f"Signer(kind={self.kind!r}, api_key=***)"

    def sign(self, payload: str) -> str:
        """Hex HMAC-SHA256, or base64 Ed25519, of `payload`."""
        if self._ed is not None:
            return base64.b64encode(self._ed.sign(payload.encode())).decode()
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def sign_ws(self, params: dict) -> dict:
        """`params` with `signature` added (WS API); `apiKey` must already be in them."""
        params["signature"] = self.sign(ws_payload(params))
        return params

    def sign_rest(self, params: dict) -> str:
        """The signed query string: `params` as given, then `&signature=...` last."""
        q = rest_query(params)
        return f"{q}&signature={quote(self.sign(q), safe='')}"
