"""Signed snapshots: the Ed25519 key pair that says a snapshot was written by the matcher or
the follower, and not by anyone else who can write Redis.

A snapshot's SHA-256 only proves its bytes were not damaged: anyone who can write Redis can
change a balance and recompute it. So the processes that write snapshots (``exch run``, ``exch
follow``) hold a private key and sign each one; every process that loads one (recovery,
``exch replay``, the follower's start, the hot standby, the archive, a gateway's read model)
holds only the public key, so a reader that is broken into cannot sign. A snapshot is
trusted only if its signature verifies under the trusted public key.

What is signed (``snapshot_message``): the text below, in UTF-8, one field a line, so a
genuine signature cannot be moved to another partition's or another seq's snapshot, or to
other bytes::

    exch-snapshot-signature/1
    partition <p>
    seq <seq>
    sha256 <state hash, 64 lowercase hex digits>
    size <bytes of the state>

The state's own format version is the start of the hashed bytes, so it is signed too. The
signature (64 bytes, as hex) and the key id (``key_id``: the first 16 hex digits of the
SHA-256 of the raw 32-byte public key) go beside the hash in the snapshot's index entry and
in its archived file; the state bytes, their hash and every replay stay exactly as they were.

Key files: ``$EXCH_HOME/keys/snapshot-signing.key`` (private, PKCS#8 PEM, mode 0600, its
folder 0700) and ``snapshot-signing.pub`` beside it (SubjectPublicKeyInfo PEM, what
``openssl pkey -pubout`` writes); ``EXCH_SNAPSHOT_KEY`` and ``EXCH_SNAPSHOT_PUBLIC_KEY`` name
other paths. A writer that finds no private key makes the pair (and says so, once, on stderr),
so a fresh machine and the demo need no setup; a reader that finds no public key stops with
``SigningKeyError`` (exit 2) saying where to copy it from.

The public API: ``load_signer(path)`` (a writer's; makes the pair if missing),
``load_verifier(path)`` (a reader's), ``Signer.sign_snapshot`` and ``Verifier.check``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.errors import SigningKeyError

log = logging.getLogger("exch.keys")

KEY_FILE = "snapshot-signing.key"
PUBLIC_FILE = "snapshot-signing.pub"
SIGNED_FORMAT = "exch-snapshot-signature/1"
"""The first line of every signed message: the name and version of what is signed."""
SIGNATURE_BYTES = 64


def keys_dir() -> Path:
    """The folder of the default key files: ``keys`` in this user's exchange folder."""
    from .server import exch_home

    return exch_home() / "keys"


def default_key_path() -> Path:
    """The private key's file: ``$EXCH_SNAPSHOT_KEY``, else ``$EXCH_HOME/keys/...key``."""
    given = os.environ.get("EXCH_SNAPSHOT_KEY")
    return Path(given).expanduser() if given else keys_dir() / KEY_FILE


def default_public_path() -> Path:
    """The public key's file: ``$EXCH_SNAPSHOT_PUBLIC_KEY``, else ``$EXCH_HOME/keys/...pub``."""
    given = os.environ.get("EXCH_SNAPSHOT_PUBLIC_KEY")
    return Path(given).expanduser() if given else keys_dir() / PUBLIC_FILE


def snapshot_message(partition: str, seq: int, state_hash: str, size: int) -> bytes:
    """The bytes signed for the snapshot of ``partition`` at ``seq`` (see the module
    docstring). Raises ``ValueError`` for a field that could make two messages alike."""
    if not (partition.isascii() and partition.isdigit()) or type(seq) is not int or seq < 0:
        raise ValueError(f"not a partition and seq: {partition!r} {seq!r}")
    if len(state_hash) != 64 or state_hash.strip("0123456789abcdef"):
        raise ValueError(f"not a state hash: {state_hash!r}")
    return (f"{SIGNED_FORMAT}\npartition {partition}\nseq {seq}\nsha256 {state_hash}\n"
            f"size {size}\n").encode()


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of the SHA-256 of its raw
    32 bytes. Shown beside each snapshot, so people see which key signed it."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signature:
    """A snapshot's signature (64 bytes as 128 hex digits) and the id of the key that made
    it, as stored in its index entry and its archived file."""

    signature: str
    key_id: str


class Verifier:
    """Checks snapshot signatures against one trusted public key (a reader's only key)."""

    def __init__(self, public: Ed25519PublicKey, path: Path | None = None) -> None:
        self.public = public
        self.path = path
        """The file it was read from (None if it came from a private key)."""
        self.key_id = key_id(public)

    def check(self, partition: str, seq: int, state_hash: str, size: int,
              signature: str, signer_id: str) -> str | None:
        """Why the snapshot of ``partition`` at ``seq`` with this hash and size is NOT trusted
        with this signature (hex) by key ``signer_id``, or None if it is. O(1): a few tens of
        microseconds, no state bytes read."""
        if not signature:
            return "unsigned (no signature)"
        if signer_id != self.key_id:
            return (f"signed by another key (key id {signer_id or '?'}, trusted "
                    f"{self.key_id}): signature not trusted")
        try:
            sig = bytes.fromhex(signature)
            message = snapshot_message(partition, seq, state_hash, size)
        except ValueError:
            return "malformed signature or index entry"
        if len(sig) != SIGNATURE_BYTES:
            return f"malformed signature ({len(sig)} bytes, not {SIGNATURE_BYTES})"
        try:
            self.public.verify(sig, message)
        except InvalidSignature:
            return "the signature does not verify (the snapshot was changed or moved)"
        return None


class Signer:
    """Signs snapshots with the private key (a writer's: the matcher's, the follower's)."""

    def __init__(self, private: Ed25519PrivateKey, path: Path | None = None) -> None:
        self.private = private
        self.path = path
        self.verifier = Verifier(private.public_key())
        """A verifier of this key's own signatures: a writer also loads snapshots."""
        self.key_id = self.verifier.key_id

    @classmethod
    def generate(cls) -> Signer:
        """A signer with a new key that is kept nowhere (tests; a one-off tool)."""
        return cls(Ed25519PrivateKey.generate())

    def sign_snapshot(self, partition: str, seq: int, state_hash: str, size: int) -> Signature:
        """The signature of the snapshot of ``partition`` at ``seq`` (see
        ``snapshot_message``). O(1): about 50 microseconds."""
        sig = self.private.sign(snapshot_message(partition, seq, state_hash, size))
        return Signature(sig.hex(), self.key_id)

    def public_pem(self) -> bytes:
        """The public key, as the ``.pub`` file holds it."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# ------------------------------------------------------------------------ key files


def load_verifier(path: str | Path | None = None) -> Verifier:
    """The verifier of the public key in ``path`` (default: ``default_public_path()``).
    Raises ``SigningKeyError`` (exit 2) if it is missing or not an Ed25519 public key."""
    where = Path(path).expanduser() if path is not None else default_public_path()
    try:
        data = where.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(
            f"no snapshot public key at {where}: snapshots cannot be trusted without it. Copy "
            f"{PUBLIC_FILE} from the host that runs `exch run` (`exch snapshot-key` there "
            f"says where it is) and name it with --public-key or "
            f"EXCH_SNAPSHOT_PUBLIC_KEY (`exch replay --from-snapshot none` needs none)"
        ) from None
    except OSError as e:
        raise SigningKeyError(f"snapshot public key {where}: {e.strerror}") from None
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise SigningKeyError(f"snapshot public key {where} is not a PEM public key: {e}"
                              ) from None
    if not isinstance(public, Ed25519PublicKey):
        raise SigningKeyError(f"snapshot public key {where} is not an Ed25519 key")
    return Verifier(public, where)


def load_signer(path: str | Path | None = None, public_path: str | Path | None = None, *,
                create: bool = True) -> Signer:
    """The signer of the private key in ``path`` (default: ``default_key_path()``). With
    ``create`` and no file there, make a new pair first: the private key (mode 0600 from the
    start, in a folder made 0700) and the public key at ``public_path`` (default:
    ``$EXCH_SNAPSHOT_PUBLIC_KEY`` if set, else beside a ``path`` given, its name ending
    ``.pub``, else ``default_public_path()``); said once on stderr. A public key there with
    no private key is a reader's host: no pair is made (``SigningKeyError``), so the key
    the readers trust is never replaced. A missing public key beside an existing private
    key is written again. Raises ``SigningKeyError`` (exit 2)
    for a key file that cannot be read, is not an Ed25519 private key, or is readable by
    other users."""
    key_path = Path(path).expanduser() if path is not None else default_key_path()
    if public_path is not None:
        pub_path = Path(public_path).expanduser()
    elif path is not None and not os.environ.get("EXCH_SNAPSHOT_PUBLIC_KEY"):
        pub_path = key_path.with_suffix(".pub")
    else:
        pub_path = default_public_path()
    if not key_path.exists():
        if not create:
            raise SigningKeyError(f"no snapshot signing key at {key_path}")
        if pub_path.exists() and not key_path.exists():  # (not a writer that just made one)
            # a host given only the public key (a reader's host) must not make a pair of its
            # own: it would replace the key every reader here trusts with one nobody else
            # does, and sign snapshots no other host accepts
            raise SigningKeyError(
                f"no snapshot signing key at {key_path}, but a public key is at {pub_path}: "
                "this host reads snapshots signed elsewhere. Give it the private key that "
                "public key belongs to (EXCH_SNAPSHOT_KEY), or remove the public key to make "
                "a new pair here")
        made = _create_private(key_path)
        signer = _read_private(key_path)
        _write_public(pub_path, signer)
        if made:
            log.warning("made a snapshot signing key pair (key id %s): %s, private: only the "
                        "hosts that run `exch run` and `exch follow` may hold it; %s, public: "
                        "give it to every host that loads snapshots", signer.key_id,
                        key_path, pub_path)
        return signer
    signer = _read_private(key_path)
    try:
        published = pub_path.read_bytes()
    except FileNotFoundError:
        _write_public(pub_path, signer)
        log.warning("wrote the snapshot public key %s (key id %s)", pub_path, signer.key_id)
        return signer
    except OSError:
        return signer  # not ours to read: the readers' business
    try:
        theirs = serialization.load_pem_public_key(published)
        same = isinstance(theirs, Ed25519PublicKey) and key_id(theirs) == signer.key_id
    except (ValueError, TypeError):
        same = False
    if not same:
        log.warning("the snapshot public key %s is not this signing key's (key id %s): readers "
                    "that use it will not trust the snapshots written now", pub_path,
                    signer.key_id)
    return signer


def _read_private(key_path: Path) -> Signer:
    try:
        mode = key_path.stat().st_mode
        if os.name == "posix" and mode & 0o077:
            raise SigningKeyError(
                f"snapshot signing key {key_path} is readable by other users (mode "
                f"{stat.S_IMODE(mode):o}): anyone who reads it can forge snapshots. "
                f"`chmod 600 {key_path}`, and make a new pair if others may have read it")
        data = key_path.read_bytes()
    except OSError as e:
        raise SigningKeyError(f"snapshot signing key {key_path}: {e.strerror}") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"snapshot signing key {key_path} is not an unencrypted PEM "
                              f"private key: {e}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"snapshot signing key {key_path} is not an Ed25519 key")
    return Signer(private, key_path)


def _private_folder(folder: Path) -> None:
    """Make ``folder`` (0700) if missing; the default keys folder is made 0700 even if it
    exists (it is ours); another folder someone named is left as it is."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder == keys_dir() and os.name == "posix":
        os.chmod(folder, 0o700)


def _create_private(key_path: Path) -> bool:
    """Write a new private key at ``key_path`` unless one appears there meanwhile (two
    writers starting at once keep one pair): created 0600 under a temporary name, then
    linked into place, which fails if the name exists. Whether this call made it."""
    _private_folder(key_path.parent)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    tmp = key_path.with_name(f".{key_path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, key_path)
        except FileExistsError:
            return False  # another writer made the pair first: use theirs
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _write_public(pub_path: Path, signer: Signer) -> None:
    """Write the public key (0644: it is public) whole or not at all."""
    pub_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = pub_path.with_name(f".{pub_path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.public_pem())
    os.replace(tmp, pub_path)
