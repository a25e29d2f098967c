"""Provenance: ``train`` signs a version's file manifest; every load verifies the signature.

A digest that the model's author computes proves nothing: whoever writes the folder can write a
matching manifest and tag. A signature over the manifest can only be made with the training
identity's private key, so someone who can register versions or write the registry's storage,
but does not hold that key, cannot produce a version that loads.

- The signed text is :data:`SIGNED_PREFIX` followed by the bytes of the manifest
  (``trust.MANIFEST_FILE``, the sha256 of every file of the folder); the signature is
  Ed25519 (RFC 8032) from ``cryptography``, which Databricks Runtime ships and MLflow requires.
  It is written beside the manifest as :data:`SIGNATURE_FILE` (JSON: key id, signature).
- The private key (PKCS#8 PEM) is read by ``train`` only: from :data:`PRIVATE_KEY_ENV` (on
  Databricks a job-cluster environment variable that references a secret:
  ``{{secrets/<scope>/<key>}}``), else locally from the state folder, where the first ``train``
  creates a key pair (:data:`LOCAL_KEY_FOLDER`). On Databricks there is no local fallback.
- The public keys a load accepts are configured on their own, never read from the version, its
  tags or its run: :data:`TRUSTED_KEYS_ENV` (the bundle variable ``model_signing_public_keys``),
  else the state folder's public key file. Several keys may be trusted at once (rotation).
  A public key is written ``ed25519:<base64 of the 32 raw bytes>``; its id is the first 16 hex
  digits of the sha256 of those bytes.

Nothing here imports Spark or MLflow.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from spark_mlops.errors import ConfigError

SIGNATURE_FILE = "files.sha256.json.sig"
SIGNATURE_FORMAT = 1
ALGORITHM = "ed25519"
# Domain separation: a signature over a manifest can never be replayed as a signature of
# anything else this key might sign, nor the other way round.
SIGNED_PREFIX = b"spark-mlops model manifest v1\n"
PRIVATE_KEY_ENV = "SPARK_MLOPS_SIGNING_KEY"
TRUSTED_KEYS_ENV = "SPARK_MLOPS_TRUSTED_KEYS"
LOCAL_KEY_FOLDER = "signing"
LOCAL_PRIVATE_KEY = "model-signing.key"
LOCAL_PUBLIC_KEY = "model-signing.pub"
_PUBLIC_KEY = re.compile(r"^ed25519:([A-Za-z0-9+/]{43}=)$")


class SignatureError(Exception):
    """A signature or a key cannot be read or does not verify (trust.py turns it into exit 9)."""


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys a load accepts, by key id, and where they were configured (for messages)."""

    keys: dict[str, object]
    source: str


def key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def public_key_text(raw_public: bytes) -> str:
    return f"{ALGORITHM}:{base64.b64encode(raw_public).decode()}"


def parse_public_keys(text: str, source: str) -> TrustedKeys:
    """``ed25519:<base64>`` entries separated by commas, spaces or newlines."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys: dict[str, object] = {}
    for entry in re.split(r"[\s,]+", text.strip()):
        if not entry:
            continue
        match = _PUBLIC_KEY.match(entry)
        if not match:
            raise ConfigError(f"{source}: {entry[:24]!r} is not a public key; expected ed25519:<base64 of 32 bytes>")
        raw = base64.b64decode(match.group(1))
        keys[key_id(raw)] = Ed25519PublicKey.from_public_bytes(raw)
    if not keys:
        raise ConfigError(f"{source}: no public key given")
    return TrustedKeys(keys, source)


def local_key_folder(state_dir: str | Path) -> Path:
    return Path(state_dir) / LOCAL_KEY_FOLDER


def trusted_keys(state_dir: str | Path) -> TrustedKeys | None:
    """The configured public keys: :data:`TRUSTED_KEYS_ENV`, else the state folder's public key
    file; None when neither exists (then every version is refused)."""
    text = os.environ.get(TRUSTED_KEYS_ENV, "").strip()
    if text:
        return parse_public_keys(text, TRUSTED_KEYS_ENV)
    local = local_key_folder(state_dir) / LOCAL_PUBLIC_KEY
    if local.is_file():
        return parse_public_keys(local.read_text(encoding="utf-8"), str(local))
    return None


def signing_key(state_dir: str | Path, *, on_databricks: bool):
    """The private key ``train`` signs with: :data:`PRIVATE_KEY_ENV`, else (locally only) the
    state folder's, created with its public key on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = os.environ.get(PRIVATE_KEY_ENV, "").strip()
    if pem:
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{PRIVATE_KEY_ENV} is not a PEM private key (PKCS#8, unencrypted)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{PRIVATE_KEY_ENV} holds a {type(key).__name__}; model signing takes an Ed25519 key")
        return key
    if on_databricks:
        raise ConfigError(f"train signs the model it registers but {PRIVATE_KEY_ENV} is not set: reference the "
                          "signing key's secret in the training job cluster's environment (docs/first-deploy.md)")
    return _local_key_pair(local_key_folder(state_dir))


def _local_key_pair(folder: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_file, public_file = folder / LOCAL_PRIVATE_KEY, folder / LOCAL_PUBLIC_KEY
    if private_file.is_file():
        return serialization.load_pem_private_key(private_file.read_bytes(), password=None)
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    partial = private_file.with_name(private_file.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # readable by its owner only
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_file.write_text(public_key_text(raw_public(key)) + "\n", encoding="utf-8")
    os.replace(partial, private_file)  # the key pair exists whole or not at all
    return key


def raw_public(private_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signature_bytes(private_key, manifest: bytes) -> bytes:
    """The content of :data:`SIGNATURE_FILE` for ``manifest``."""
    document = {
        "format": SIGNATURE_FORMAT,
        "algorithm": ALGORITHM,
        "key_id": key_id(raw_public(private_key)),
        "signature": base64.b64encode(private_key.sign(SIGNED_PREFIX + manifest)).decode(),
    }
    return (json.dumps(document, sort_keys=True, indent=1) + "\n").encode()


def verify(signature_file: bytes, manifest: bytes, trusted: TrustedKeys) -> str:
    """The id of the trusted key that signed ``manifest``, or :class:`SignatureError`."""
    from cryptography.exceptions import InvalidSignature

    try:
        document = json.loads(signature_file)
        kid, algorithm = str(document["key_id"]), document["algorithm"]
        signature = base64.b64decode(document["signature"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise SignatureError(f"its signature file {SIGNATURE_FILE} cannot be read") from None
    if algorithm != ALGORITHM or document.get("format") != SIGNATURE_FORMAT:
        raise SignatureError(f"its signature is {algorithm!r} format {document.get('format')!r}, "
                             f"expected {ALGORITHM} format {SIGNATURE_FORMAT}")
    key = trusted.keys.get(kid)
    if key is None:
        raise SignatureError(f"it is signed by key {kid[:16]!r}, which is not a trusted key ({trusted.source})")
    try:
        key.verify(signature, SIGNED_PREFIX + manifest)
    except InvalidSignature:
        raise SignatureError(f"its signature does not verify with trusted key {kid} (the manifest was "
                             "changed after it was signed, or the signature was forged)") from None
    return kid
