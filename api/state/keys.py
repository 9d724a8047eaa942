"""API keys in PostgreSQL (shared mode): the table `api_keys` in the deployment's schema. As in the key
file, only `sha256(key)` is stored, with the key's public id, principal, roles and when it was created;
a revoked key keeps its row with `revoked_at` set (who had which key stays answerable), and is never
accepted again. Every replica reads the table (api/auth.py: `KeyStore`), `meshrag keys` writes it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg

from api.auth import NewKey, check_principal, new_key, other_roles
from api.settings import ApiKeyEntry, ApiSettings
from indexing.stores.pg_shared import is_shared, shared_dsn
from indexing.stores.pg_tables import PgTables
from knowledge.errors import ConfigError

_DDL = (
    ("CREATE TABLE IF NOT EXISTS {s}.api_keys ("
    " id text PRIMARY KEY, hash text NOT NULL, principal text NOT NULL,"
    " roles text[] NOT NULL DEFAULT '{{}}', created_at timestamptz NOT NULL DEFAULT now(),"
    " revoked_at timestamptz)"),
)
_COLUMNS = "id, hash, principal, roles, created_at, revoked_at"


def key_table(settings: ApiSettings) -> PgKeyTable | None:
    """The key table of shared mode (not connected yet), or None in FAISS mode."""
    if not is_shared(settings):
        return None
    return PgKeyTable(lambda: shared_dsn(settings) or "", settings.pg_schema)


class PgKeyTable:
    """`api_keys` in `schema`. A lost connection raises StoreUnavailable; the next call reconnects."""

    def __init__(self, dsn: Any, schema: str = "meshrag") -> None:
        self.schema = schema
        self._tables = PgTables(dsn, schema, _DDL, what="API keys")

    @property
    def where(self) -> str:
        """Where the keys are, for messages (never a password)."""
        return f"PostgreSQL schema {self.schema!r} at {self._tables.where}"

    def warm_up(self) -> None:
        self._tables.warm_up()

    def close(self) -> None:
        self._tables.close()

    def active(self) -> list[ApiKeyEntry]:
        """Keys not revoked."""
        return [entry for entry, revoked in self.all() if revoked is None]

    def all(self) -> list[tuple[ApiKeyEntry, str | None]]:
        """Every key with when it was revoked (None: active), by principal and id."""
        query = self._tables.sql(f"SELECT {_COLUMNS} FROM {{s}}.api_keys ORDER BY principal, id")
        return [_entry(row) for row in self._tables.run(lambda conn: conn.execute(query).fetchall())]

    def create(self, principal: str, roles: Iterable[str]) -> NewKey:
        """Generate a key for `principal` with `roles`, store its hash and return the key (shown once)."""
        principal, cleaned = check_principal(principal, roles)
        insert = self._tables.sql("INSERT INTO {s}.api_keys (id, hash, principal, roles, created_at)"
                                  " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING")
        same = self._tables.sql(f"SELECT {_COLUMNS} FROM {{s}}.api_keys"
                                " WHERE principal = %s AND revoked_at IS NULL")

        def write(conn: psycopg.Connection) -> tuple[str, ApiKeyEntry, list[ApiKeyEntry]]:
            while True:  # an id already taken (one in 2^48) is drawn again
                key, entry = new_key(principal, cleaned)
                created = datetime.fromisoformat(entry.created_at or "")
                if conn.execute(insert, (entry.id, entry.hash, principal, cleaned, created)).rowcount:
                    break
            earlier = [e for e, _ in map(_entry, conn.execute(same, (principal,))) if e.id != entry.id]
            return key, entry, earlier

        key, entry, earlier = self._tables.run(write, transaction=True)
        return NewKey(key=key, entry=entry, other_roles=other_roles(earlier, principal, cleaned))

    def revoke(self, kid: str) -> ApiKeyEntry:
        """Mark the key with id `kid` revoked; ConfigError when there is no active key with that id."""
        update = self._tables.sql(f"UPDATE {{s}}.api_keys SET revoked_at = now() WHERE id = %s"
                                  f" AND revoked_at IS NULL RETURNING {_COLUMNS}")
        row = self._tables.run(lambda conn: conn.execute(update, (kid,)).fetchone())
        if row is not None:
            return _entry(row)[0]
        keys = self.all()
        revoked = next((when for e, when in keys if e.id == kid), None)
        if revoked is not None:
            raise ConfigError(f"key {kid!r} was already revoked at {revoked} ({self.where})")
        known = ", ".join(e.id for e, when in keys if when is None) or "none"
        raise ConfigError(f"no key with id {kid!r} in {self.where}; active key ids there: {known}")


def _entry(row: tuple[Any, ...]) -> tuple[ApiKeyEntry, str | None]:
    kid, hash_, principal, roles, created, revoked = row
    entry = ApiKeyEntry(id=kid, hash=hash_, principal=principal, roles=list(roles or ()),
                        created_at=_iso(created))
    return entry, _iso(revoked)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")
