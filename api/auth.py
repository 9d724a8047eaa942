"""API keys: who a request acts as.

A key looks like `mr_<id>_<secret>`. Only `sha256(key)` is stored, next to the key's `id` (its public
prefix, used to find the entry) and the principal and roles it acts as. Keys come from a JSON file
(`<data dir>/api-keys.json`, written atomically with mode 0600 by `meshrag keys create`) and/or the
MESHRAG_API_KEYS environment variable (a JSON list of the same entries). The file is re-read when it
changes, so a new key works without a restart.

A request presents a key as `Authorization: Bearer <key>` or `X-API-Key: <key>`. No key → the
anonymous principal (public products only). A key that is malformed, unknown or does not match its
hash → `InvalidApiKey` (401). Keys are never logged or echoed; error messages name only the header.

In shared mode (store = pgvector) keys also live in PostgreSQL (api/state/keys.py: the `api_keys` table,
hashes only), written by `meshrag keys create|revoke` from any host. Each process re-reads that table when
its copy is older than `REFRESH_S` (and at most every `MISS_REFRESH_S` for an unknown key id), so a key
created or revoked anywhere applies on every replica within about a second. For the same id the
environment wins over the file, and the file over PostgreSQL.
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
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from api.errors import InvalidApiKey, KeyStoreUnavailable
from api.settings import ApiKeyEntry, ApiSettings
from knowledge.errors import ConfigError, StoreUnavailable
from knowledge.model import Principal

KEY_PREFIX = "mr"
_KEY = re.compile(r"^mr_([a-z0-9]{4,64})_([A-Za-z0-9_\-]{16,200})$")
_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:\-]{0,99}$")
RESERVED_PRINCIPALS = frozenset({Principal.anonymous().id})
FILE_VERSION = 1
REFRESH_S = 1.0  # how stale a process's copy of the PostgreSQL key table may be (revocations: ≤ this)
MISS_REFRESH_S = 0.2  # an unknown key id reloads the table at most this often (a key created just now)


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


class KeyTable(Protocol):
    """Keys kept in a database (api/state/keys.py); only the active ones are read here."""

    def warm_up(self) -> None: ...

    def close(self) -> None: ...

    def active(self) -> list[ApiKeyEntry]: ...


class KeyStore:
    """API key entries from a file, the environment and (shared mode) a table; `principal_for(key)`
    authenticates."""

    def __init__(self, path: Path, env_entries: Iterable[ApiKeyEntry] = (),
                 table: KeyTable | None = None) -> None:
        self.path = path
        self.table = table
        self._env = {e.id: e for e in env_entries}
        self._file: dict[str, ApiKeyEntry] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._db: dict[str, ApiKeyEntry] = {}
        self._db_loaded = -float("inf")  # time.monotonic() of the last read of the table
        self._db_lock = threading.Lock()

    def warm_up(self) -> None:
        """Read the key file (and table) now: a broken file stops the server from starting (ConfigError)."""
        self._refresh()
        if self.table is not None:
            self.table.warm_up()
            self._reload(0.0)

    def close(self) -> None:
        """Close the table's idle connections (a later lookup reconnects)."""
        if self.table is not None:
            self.table.close()

    def entries(self) -> list[ApiKeyEntry]:
        self._refresh()
        if self.table is not None:
            self._reload(REFRESH_S)
        # The environment wins over the file, the file over the table.
        merged = self._db | self._file | self._env
        return sorted(merged.values(), key=lambda e: (e.principal, e.id))

    def principal_for(self, key: str | None) -> Principal:
        """The principal a presented key acts as; the anonymous principal when no key was presented."""
        if key is None:
            return Principal.anonymous()
        kid = key_id(key)
        if kid is None:
            raise InvalidApiKey("the API key is not valid")
        return self.principal_of(kid, hash_key(key))

    def principal_of(self, kid: str, key_hash: str) -> Principal:
        """The principal of the key with id `kid` whose `hash_key` is `key_hash` (a web session keeps these,
        never the key); InvalidApiKey when there is no such key (any more)."""
        try:
            self._refresh()
            entry = self._env.get(kid) or self._file.get(kid)
            if entry is None and self.table is not None:
                # The environment and the file win over the table, so only a key found in neither needs it.
                self._reload(REFRESH_S)
                if kid not in self._db:
                    self._reload(MISS_REFRESH_S)
                entry = self._db.get(kid)
        except (ConfigError, StoreUnavailable) as exc:
            # Fail closed: a key file or table that cannot be read may have revoked the key being presented.
            raise KeyStoreUnavailable(str(exc)) from None
        # compare_digest on equal-length strings: the time taken does not depend on where they differ.
        if entry is None or not hmac.compare_digest(entry.hash, key_hash):
            raise InvalidApiKey("the API key is not valid")
        return Principal(id=entry.principal, roles=frozenset(entry.roles))

    def _reload(self, max_age_s: float) -> None:
        """Read the table again if this process's copy is older than `max_age_s`."""
        assert self.table is not None
        if time.monotonic() - self._db_loaded < max_age_s:
            return
        with self._db_lock:  # one reader at a time; the others then find it fresh
            if time.monotonic() - self._db_loaded < max_age_s:
                return
            started = time.monotonic()
            self._db = {e.id: e for e in self.table.active()}
            self._db_loaded = started

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


def new_key(principal: str, roles: list[str], taken: Iterable[str] = ()) -> tuple[str, ApiKeyEntry]:
    """A fresh key and its stored entry (an id not in `taken`); `principal` and `roles` already checked."""
    taken = set(taken)
    kid = secrets.token_hex(6)
    while kid in taken:
        kid = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{kid}_{secrets.token_urlsafe(32)}"
    entry = ApiKeyEntry(id=kid, hash=hash_key(key), principal=principal, roles=roles,
                        created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    return key, entry


def other_roles(entries: Iterable[ApiKeyEntry], principal: str, roles: list[str]
                ) -> tuple[tuple[str, ...], ...]:
    """The role sets of `principal`'s other keys that differ from `roles` (worth a warning: keys of one
    principal share its provenance records)."""
    others = {tuple(sorted(set(e.roles))) for e in entries if e.principal == principal} - {tuple(roles)}
    return tuple(sorted(others))


def create_key(path: Path, principal: str, roles: Iterable[str]) -> NewKey:
    """Generate a key for `principal` with `roles`, add its hashed entry to the key file (atomically,
    mode 0600) and return the key — the only time it exists outside the caller's hands."""
    principal, cleaned = check_principal(principal, roles)
    with _file_lock(path):
        entries = read_key_file(path)
        key, entry = new_key(principal, cleaned, (e.id for e in entries))
        write_key_file(path, [*entries, entry])
    return NewKey(key=key, entry=entry, other_roles=other_roles(entries, principal, cleaned))


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


def open_key_store(settings: ApiSettings) -> KeyStore:
    """The key store of `settings` (not warmed up): the key file and MESHRAG_API_KEYS, plus the
    PostgreSQL table in shared mode."""
    from api.state.keys import key_table

    return KeyStore(settings.resolved_api_keys_file(), settings.api_keys, key_table(settings))
