import hashlib
import hmac


def oa_signature(key_id: str, secret: str, value: bytes) -> bytes:
    """The oa_signature header of an ESB command: b"<key id>:<lowercase hex>", the
    HMAC-SHA256 of the exact record value bytes under the secret of key_id."""
    digest = hmac.new(secret.encode("utf-8"), value, hashlib.sha256).hexdigest()
    return f"{key_id}:{digest}".encode("ascii")
