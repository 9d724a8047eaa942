"""The provenance log in PostgreSQL. Only what PostgreSQL does its own way: a schema, the head row
locked FOR UPDATE (so appends from any number of processes form one chain), synchronous_commit, the SQL,
and reconnecting after the server went away."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from knowledge.errors import ConfigError, StoreUnavailable
from retrieval.provenance.chain import GENESIS_HASH, Head
from retrieval.provenance.storage import APPEND_ONLY, SqlProvenanceLog
from retrieval.provenance.verify import StoredRow

_DDL = (
    "SELECT pg_advisory_xact_lock(hashtext('meshrag.provenance.ddl'))",
    "CREATE SCHEMA IF NOT EXISTS {s}",
    ("CREATE TABLE IF NOT EXISTS {s}.provenance (seq bigint PRIMARY KEY CHECK (seq > 0),"
     " request_id text NOT NULL UNIQUE, principal_id text NOT NULL, created_at timestamptz NOT NULL,"
     " record jsonb NOT NULL, prev_hash text NOT NULL, hash text NOT NULL)"),
    "CREATE INDEX IF NOT EXISTS provenance_principal ON {s}.provenance (principal_id, seq)",
    ("CREATE TABLE IF NOT EXISTS {s}.provenance_head (id smallint PRIMARY KEY CHECK (id = 1),"
     " seq bigint NOT NULL, request_id text, hash text NOT NULL)"),
    # Seed the anchor only for a new log: a deleted anchor must not quietly restart the chain.
    (f"INSERT INTO {{s}}.provenance_head (id, seq, request_id, hash) SELECT 1, 0, NULL, '{GENESIS_HASH}'"
     " WHERE NOT EXISTS (SELECT 1 FROM {s}.provenance) AND NOT EXISTS (SELECT 1 FROM {s}.provenance_head)"),
    ("CREATE OR REPLACE FUNCTION {s}.provenance_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
     f" BEGIN RAISE EXCEPTION '{APPEND_ONLY}: % on % refused', TG_OP, TG_TABLE_NAME; END $$"),
    ("CREATE OR REPLACE FUNCTION {s}.provenance_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN IF NEW.seq <= OLD.seq OR NEW.seq IS DISTINCT FROM (SELECT max(seq) FROM {s}.provenance)"
     " OR NEW.hash IS DISTINCT FROM (SELECT hash FROM {s}.provenance WHERE seq = NEW.seq) THEN"
     f" RAISE EXCEPTION '{APPEND_ONLY}: the anchor only moves forward, onto the last record';"
     " END IF; RETURN NEW; END $$"),
    ("CREATE OR REPLACE TRIGGER provenance_append_only BEFORE UPDATE OR DELETE ON {s}.provenance"
     " FOR EACH ROW EXECUTE FUNCTION {s}.provenance_append_only()"),
    ("CREATE OR REPLACE TRIGGER provenance_no_truncate BEFORE TRUNCATE ON {s}.provenance"
     " FOR EACH STATEMENT EXECUTE FUNCTION {s}.provenance_append_only()"),
    ("CREATE OR REPLACE TRIGGER provenance_head_no_delete BEFORE DELETE ON {s}.provenance_head"
     " FOR EACH ROW EXECUTE FUNCTION {s}.provenance_append_only()"),
    ("CREATE OR REPLACE TRIGGER provenance_head_no_truncate BEFORE TRUNCATE ON {s}.provenance_head"
     " FOR EACH STATEMENT EXECUTE FUNCTION {s}.provenance_append_only()"),
    ("CREATE OR REPLACE TRIGGER provenance_head_forward BEFORE UPDATE ON {s}.provenance_head"
     " FOR EACH ROW EXECUTE FUNCTION {s}.provenance_head_forward()"),
)
_HEAD = "SELECT seq, request_id, hash FROM {s}.provenance_head WHERE id = 1"


class PgProvenanceLog(SqlProvenanceLog):
    """ProvenanceLog in PostgreSQL: `provenance` and `provenance_head` in `schema`. Appends lock the head
    row (SELECT … FOR UPDATE), so appends from any number of processes form one chain. A lost connection
    raises StoreUnavailable; the next call reconnects."""

    name = "postgres"

    def __init__(self, dsn: str, schema: str = "meshrag", *, connect_timeout: int = 5) -> None:
        if not schema or len(schema) > 63:
            raise ConfigError(f"schema name {schema!r} must have 1 to 63 characters")
        super().__init__()
        self.schema = schema
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        params = conninfo_to_dict(dsn)
        self._where = f"{params.get('host', 'localhost')}/{params.get('dbname', '')}"  # never the password
        self._label = f"schema {schema!r} at {self._where}"

    def _set_up(self) -> None:
        for attempt in range(3):
            try:
                with self._transaction() as conn:
                    for statement in _DDL:
                        conn.execute(self._sql(statement))
                return
            except psycopg.errors.UniqueViolation:
                # The schema was created at the same moment by another part (the vector store, a replica's
                # other tables) under its own lock: it exists now, so the next try goes through.
                if attempt == 2:
                    raise

    def _reading(self) -> AbstractContextManager[psycopg.Connection]:
        return self._transaction()

    @contextmanager
    def _writing(self) -> Iterator[psycopg.Connection]:
        """Durable at commit (synchronous_commit=on, whatever the server's default)."""
        with self._transaction() as conn:
            conn.execute("SET LOCAL synchronous_commit = on")
            yield conn

    def _locked_head(self, conn: psycopg.Connection) -> Head | None:
        return conn.execute(self._sql(_HEAD + " FOR UPDATE")).fetchone()

    def _stored(self, conn: psycopg.Connection, request_ids: Sequence[str]
                ) -> dict[str, dict[str, Any]]:
        return dict(conn.execute(self._sql("SELECT request_id, record FROM {s}.provenance"
                                           " WHERE request_id = ANY(%s)"), (list(request_ids),)))

    def _insert(self, conn: psycopg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        values = sql.SQL("(%s, %s, %s, %s::timestamptz, %s::jsonb, %s, %s)")
        conn.execute(self._sql("INSERT INTO {s}.provenance (seq, request_id, principal_id, created_at,"
                               " record, prev_hash, hash) VALUES ") + sql.SQL(",").join([values] * len(rows)),
                     [value for row in rows for value in row])
        last = rows[-1]
        conn.execute(self._sql("UPDATE {s}.provenance_head SET seq = %s, request_id = %s, hash = %s"
                               " WHERE id = 1"), (last[0], last[1], last[6]))

    def _newest(self, conn: psycopg.Connection, limit: int, principal_id: str | None
                ) -> list[dict[str, Any]]:
        where, params = ("WHERE principal_id = %s", (principal_id, limit)) if principal_id else ("", (limit,))
        rows = conn.execute(self._sql(f"SELECT record FROM {{s}}.provenance {where} ORDER BY seq DESC"
                                      " LIMIT %s"), params)
        return [data for (data,) in rows]

    @contextmanager
    def _snapshot(self) -> Iterator[tuple[Head | None, Iterator[StoredRow]]]:
        """Streams one REPEATABLE READ snapshot on a connection of its own."""
        with (
            _pg_errors(self._where),
            psycopg.connect(self._dsn, connect_timeout=self._connect_timeout) as conn,
        ):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            try:
                head = conn.execute(self._sql(_HEAD)).fetchone()
            except psycopg.errors.UndefinedTable as exc:
                raise ConfigError(f"no provenance log in schema {self.schema!r} at {self._where}; check "
                                  "the DSN and schema") from exc
            with conn.cursor(name="meshrag_provenance_verify") as cur:
                cur.itersize = 500
                cur.execute(self._sql("SELECT seq, request_id, prev_hash, hash, record"
                                      " FROM {s}.provenance ORDER BY seq"))
                yield head, (_stored_row(*row) for row in cur)

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(s=sql.Identifier(self.schema))

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """One transaction on this log's connection (a lock keeps threads off each other's transactions).
        A dropped idle connection is replaced once; a failure mid-transaction is StoreUnavailable."""
        with self._lock:
            conn = self._connection()
            try:
                with _pg_errors(self._where), conn.transaction():
                    yield conn
            except StoreUnavailable:
                self.close()
                raise

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("")  # ping: the server may have restarted since the last call
                return self._conn
            except psycopg.OperationalError:
                self.close()
        with _pg_errors(self._where):
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._connect_timeout)
        return self._conn


def _stored_row(seq: int, request_id: str, prev_hash: str, hash_: str, data: Any) -> StoredRow:
    if isinstance(data, dict):
        return StoredRow(seq, request_id, prev_hash, hash_, data)
    return StoredRow(seq, request_id, prev_hash, hash_, None, "not a JSON object")


@contextmanager
def _pg_errors(where: str) -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(f"PostgreSQL at {where} is unavailable ({reason}); retry in a few seconds, "
                               "the provenance log reconnects by itself") from exc
