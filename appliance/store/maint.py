"""SQL for upgrades and diagnostics (appliance.maint): schema state, readiness, rollback.

Like appliance.store.backup these work on database *files* with short-lived `sqlite3`
connections: `callvault upgrade` and `callvault doctor` run beside a live appliance process.
All functions block; callers run them in a thread.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from appliance.store.backup import _connect
from appliance.store.base import StoreError


def writable(path: Path) -> str:
    """ "" when a write transaction can be taken on `path` now, else why not."""
    try:
        with closing(_connect(path, readonly=False)) as con:
            con.execute("PRAGMA busy_timeout=5000")
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
    except (sqlite3.Error, StoreError) as exc:
        return str(exc)
    return ""


def quick_check(path: Path) -> list[str]:
    """`PRAGMA quick_check` lines (`["ok"]` for a sound file): seconds, not minutes, at 1 M
    calls, so it fits into an upgrade's readiness check."""
    try:
        with closing(_connect(path, readonly=True)) as con:
            return [str(r[0]) for r in con.execute("PRAGMA quick_check")]
    except (sqlite3.DatabaseError, StoreError) as exc:
        return [str(exc)]


def restore_into(live: Path, snapshot: Path) -> None:
    """Replace the content of the live database `live` with `snapshot`, page by page, in one
    write transaction (SQLite's backup API).

    Unlike swapping files, this is safe while other processes keep `live` open: they see the
    old content or the restored one, never a mix, and their connections stay valid (the
    running release keeps serving through a rolled-back upgrade).
    """
    try:
        with (
            closing(_connect(snapshot, readonly=True)) as src,
            closing(_connect(live, readonly=False)) as dest,
        ):
            dest.execute("PRAGMA busy_timeout=10000")
            src.backup(dest)
            dest.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot restore {live} from {snapshot}: {exc}") from exc


def personal_strings(path: Path, limit: int = 100_000) -> set[str]:
    """Caller names and numbers the database holds in clear (calls, CDRs): what a support
    bundle must scrub from logs where no pattern finds them (a name is just words)."""
    out: set[str] = set()
    sql = (
        "SELECT calling_number, caller_name, dialed_number FROM calls"
        " UNION SELECT calling_number, caller_name, dialed_number FROM cdrs LIMIT ?"
    )
    try:
        with closing(_connect(path, readonly=True)) as con:
            for row in con.execute(sql, (limit,)):
                out.update(str(v) for v in row if v)
    except (sqlite3.Error, StoreError):
        return out
    return out


def _user_tables(con: sqlite3.Connection, schema: str) -> dict[str, str]:
    rows = con.execute(
        f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'table'"
        " AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    virtual = [str(n) for n, s in rows if str(s).upper().startswith("CREATE VIRTUAL")]
    return {
        str(n): str(s)
        for n, s in rows
        if not any(str(n).startswith(v + "_") for v in virtual)  # FTS5's own shadow tables
    }


def copy_rows(src: Path, dest: Path) -> dict[str, int]:
    """Copy every row of `src` into the same tables of `dest` (the columns both have), in one
    transaction, with dest's triggers held back so rows arrive as they are: an older schema
    filled with a newer store's data (the upgrade benchmark starts from one). Tables only
    `src` has are left out. Rows copied per table."""
    try:
        with closing(_connect(dest, readonly=False)) as con:
            con.execute("PRAGMA foreign_keys=OFF")
            con.execute("ATTACH DATABASE ? AS src", (src.resolve().as_uri() + "?mode=ro",))
            con.execute("BEGIN IMMEDIATE")
            triggers = con.execute(
                "SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger'"
            ).fetchall()
            for name, _sql in triggers:
                con.execute(f'DROP TRIGGER main."{name}"')
            theirs = _user_tables(con, "src")
            copied = {}
            for table in _user_tables(con, "main"):
                if table not in theirs:
                    continue
                mine = [str(r[1]) for r in con.execute(f'PRAGMA main.table_info("{table}")')]
                other = {str(r[1]) for r in con.execute(f'PRAGMA src.table_info("{table}")')}
                cols = ", ".join(f'"{c}"' for c in mine if c in other)
                cur = con.execute(
                    f'INSERT INTO main."{table}" ({cols}) SELECT {cols} FROM src."{table}"'
                )
                copied[table] = cur.rowcount
            for _name, sql in triggers:
                con.execute(sql)
            con.execute("COMMIT")
            con.execute("DETACH DATABASE src")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy rows of {src} into {dest}: {exc}") from exc
    return copied
