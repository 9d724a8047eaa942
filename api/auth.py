"""API keys: who a request acts as.

A key looks like `mr_<id>_<secret>`. Only `sha256(key)` is stored, next to the key's `id` (its public
prefix, used to find the entry) and the principal and roles it acts as. Keys come from a JSON file
(`<data dir>/api-keys.json`, written atomically with mode 0600 by `meshrag keys create`) and/or the
MESHRAG_API_KEYS environment variable (a JSON list of the same entries). The file is re-read when it
changes, so a new key works without a restart.

A request presents a key as `Authorization: Bearer <key>` or `X-API-Key: <key>`. No key → the
anonymous principal (public products only). A key that is malformed, unknown or does not match its
hash → `InvalidApiKey` (401). Keys are never logged or echoed; error messages name only the header.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from api.errors import InvalidApiKey, KeyStoreUnavailable
from api.settings import ApiKeyEntry
from knowledge.errors import ConfigError
from knowledge.model import Principal

KEY_PREFIX = "mr"
_KEY = re.compile(r"^mr_([a-z0-9]{4,64})_([A-Za-z0-9_\-]{16,200})$")
_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:\-]{0,99}$")
RESERVED_PRINCIPALS = frozenset({Principal.anonymous().id})
FILE_VERSION = 1


@dataclass(frozen=True)
class NewKey:
    key: str  # shown once, never stored
    entry: ApiKeyEntry
    # The role sets of the principal's earlier keys in the file that differ from this key's: keys of one
    # principal share its provenance records, so a name reused for another caller is worth a warning.
    other_roles: tuple[tuple[str, ...], ...] = ()


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id(key: str) -> str | None:
    """The lookup id of a well-formed key, else None."""
    match = _KEY.match(key)
    return match.group(1) if match else None


class KeyStore:
    """API key entries from a file and the environment; `principal_for(key)` authenticates."""

    def __init__(self, path: Path, env_entries: Iterable[ApiKeyEntry] = ()) -> None:
        self.path = path
        self._env = {e.id: e for e in env_entries}
        self._file: dict[str, ApiKeyEntry] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Read the key file now: a broken file stops the server from starting (ConfigError)."""
        self._refresh()

    def entries(self) -> list[ApiKeyEntry]:
        self._refresh()
        merged = self._file | self._env  # the environment wins over the file for the same id
        return sorted(merged.values(), key=lambda e: (e.principal, e.id))

    def principal_for(self, key: str | None) -> Principal:
        """The principal a presented key acts as; the anonymous principal when no key was presented."""
        if key is None:
            return Principal.anonymous()
        kid = key_id(key)
        if kid is None:
            raise InvalidApiKey("the API key is not valid")
        try:
            self._refresh()
        except ConfigError as exc:
            # Fail closed: a key file that cannot be read may have revoked the key being presented.
            raise KeyStoreUnavailable(str(exc)) from None
        entry = self._env.get(kid) or self._file.get(kid)
        # compare_digest on equal-length strings: the time taken does not depend on where they differ.
        if entry is None or not hmac.compare_digest(entry.hash, hash_key(key)):
            raise InvalidApiKey("the API key is not valid")
        return Principal(id=entry.principal, roles=frozenset(entry.roles))

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            with self._lock:
                self._file, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            self._file = {e.id: e for e in read_key_file(self.path)}
            self._stamp = stamp


def read_key_file(path: Path) -> list[ApiKeyEntry]:
    """The entries of a key file; a missing file has none, an unreadable one raises ConfigError."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the API key file {path} ({type(exc).__name__}); fix or remove it, "
            "then create keys with `meshrag keys create`"
        ) from None

    def bad_shape(detail: str) -> ConfigError:
        return ConfigError(
            f"the API key file {path} does not have the expected shape ({detail}); fix or remove it"
        )

    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise bad_shape("expected an object with a `keys` list")
    try:
        return [ApiKeyEntry.model_validate(e) for e in data["keys"]]
    except (ValueError, ValidationError) as exc:
        raise bad_shape(str(exc).splitlines()[0]) from None


def check_principal(principal: str, roles: Iterable[str]) -> tuple[str, list[str]]:
    principal = principal.strip()
    if not principal or len(principal) > 200 or not principal.isprintable():
        raise ConfigError(f"principal must be 1 to 200 printable characters, got {principal!r}")
    if principal in RESERVED_PRINCIPALS:
        raise ConfigError(
            f"principal {principal!r} is reserved for requests without a key; pick another name"
        )
    cleaned = sorted({r.strip() for r in roles})
    bad = [r for r in cleaned if not _ROLE.match(r)]
    if bad:
        raise ConfigError(
            f"role(s) {', '.join(map(repr, bad))} are not valid; use letters, digits, "
            "space, '.', '_', ':' or '-' (as in the contracts' roles)"
        )
    return principal, cleaned


def create_key(path: Path, principal: str, roles: Iterable[str]) -> NewKey:
    """Generate a key for `principal` with `roles`, add its hashed entry to the key file (atomically,
    mode 0600) and return the key — the only time it exists outside the caller's hands."""
    principal, cleaned = check_principal(principal, roles)
    with _file_lock(path):
        entries = read_key_file(path)
        taken = {e.id for e in entries}
        kid = secrets.token_hex(6)
        while kid in taken:
            kid = secrets.token_hex(6)
        key = f"{KEY_PREFIX}_{kid}_{secrets.token_urlsafe(32)}"
        entry = ApiKeyEntry(
            id=kid,
            hash=hash_key(key),
            principal=principal,
            roles=cleaned,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        write_key_file(path, [*entries, entry])
    others = {tuple(sorted(set(e.roles))) for e in entries if e.principal == principal} - {tuple(cleaned)}
    return NewKey(key=key, entry=entry, other_roles=tuple(sorted(others)))


def write_key_file(path: Path, entries: list[ApiKeyEntry]) -> None:
    """Write beside the target with mode 0600, fsync, rename: readers see the old file or the new one."""
    data = {"version": FILE_VERSION, "keys": [e.model_dump() for e in entries]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise writers of one key file (two `keys create` at once must not lose a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents, or None. `Authorization` must use the Bearer scheme."""
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidApiKey("the Authorization header must be `Bearer <API key>`")
        return token.strip()
    if x_api_key is not None:
        if not x_api_key.strip():
            raise InvalidApiKey("the X-API-Key header is empty")
        return x_api_key.strip()
    return None


def revoke_key(path: Path, kid: str) -> ApiKeyEntry:
    """Remove the entry with id `kid` from the key file (atomically); ConfigError when there is none."""
    with _file_lock(path):
        entries = read_key_file(path)
        kept = [e for e in entries if e.id != kid]
        if len(kept) == len(entries):
            known = ", ".join(e.id for e in entries) or "none"
            raise ConfigError(f"no key with id {kid!r} in {path}; key ids there: {known}")
        write_key_file(path, kept)
    return next(e for e in entries if e.id == kid)
