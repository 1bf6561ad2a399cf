"""Frozen schemas of every released database version, and representative rows for any schema.

A snapshot (`tests/store/fixtures/schema/vNNNN.sql`) is the schema a box that ran release N
has: every CREATE statement SQLite keeps (sqlite_master, in creation order) after the
migrations up to N as they were released. Built from the snapshot rather than from today's
migration files, an upgrade test catches a released migration that was edited afterwards.

    .venv/bin/python -m tests.store.schema_snapshots [REV]

writes a snapshot for every migration prefix committed at git revision REV (default HEAD):
run it when a release is cut. It only reads git.

`seed` fills every table of a database with rows made from its declared types, CHECK lists
and foreign keys (parents first), so a new table is covered without anyone writing fixtures.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from appliance.store.db import _split_sql

FIXTURES = Path(__file__).parent / "fixtures" / "schema"
REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = "appliance/store/migrations"
_IN_LIST = re.compile(r"\b(\w+)\s+IN\s*\(([^()]*)\)", re.I)


# ---- snapshots
def schema_sql(con: sqlite3.Connection) -> list[str]:
    """The CREATE statements to rebuild `con`'s schema (FTS5 shadow tables left to SQLite)."""
    rows = con.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
    ).fetchall()
    virtual = [n for t, n, s in rows if t == "table" and s.upper().startswith("CREATE VIRTUAL")]
    out = []
    for kind, name, sql in rows:
        if name.startswith("sqlite_"):
            continue
        if kind == "table" and any(name.startswith(v + "_") for v in virtual):
            continue
        out.append(sql)
    return out


def snapshot_text(version: int, statements: list[str]) -> str:
    body = "".join(s.rstrip(";") + ";\n" for s in statements)
    return f"-- schema of release {version} (tests/store/schema_snapshots.py)\n{body}"


def released() -> dict[int, Path]:
    return {int(p.stem[1:]): p for p in sorted(FIXTURES.glob("v*.sql"))}


def build_from_snapshot(path: Path, version: int, dest: Path) -> None:
    con = sqlite3.connect(dest, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("BEGIN")
        for statement in _split_sql(path.read_text()):
            con.execute(statement)
        con.execute(f"PRAGMA user_version={version:d}")
        con.execute("COMMIT")
    finally:
        con.close()


def build_from_migrations(migrations: list[tuple[int, str]], dest: Path) -> None:
    con = sqlite3.connect(dest, isolation_level=None)
    try:
        con.execute("BEGIN")
        for _version, sql in migrations:
            for statement in _split_sql(sql):
                con.execute(statement)
        con.execute("COMMIT")
    finally:
        con.close()


def _git_migrations(rev: str) -> list[tuple[int, str]]:
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, MIGRATIONS + "/"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    out = []
    for name in names:
        base = Path(name).name
        if base.endswith(".sql"):
            sql = subprocess.run(
                ["git", "show", f"{rev}:{name}"], cwd=REPO, check=True, capture_output=True,
                text=True,
            ).stdout  # fmt: skip
            out.append((int(base.split("_", 1)[0]), sql))
    return sorted(out)


def write_snapshots(rev: str = "HEAD") -> list[Path]:
    migrations = _git_migrations(rev)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (version, _sql) in enumerate(migrations):
        con = sqlite3.connect(":memory:", isolation_level=None)
        for _v, sql in migrations[: i + 1]:
            for statement in _split_sql(sql):
                con.execute(statement)
        path = FIXTURES / f"v{version:04d}.sql"
        path.write_text(snapshot_text(version, schema_sql(con)))
        con.close()
        written.append(path)
    return written


# ---- representative rows
def _tables(con: sqlite3.Connection) -> dict[str, str]:
    rows = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    virtual = [n for n, s in rows if s.upper().startswith("CREATE VIRTUAL")]
    return {
        n: s
        for n, s in rows
        if n not in virtual and not any(n.startswith(v + "_") for v in virtual)
    }


def _order(con: sqlite3.Connection, tables: dict[str, str]) -> list[str]:
    """Parents before children (foreign keys); a cycle keeps the remaining order."""
    deps = {
        t: {str(r[2]) for r in con.execute(f'PRAGMA foreign_key_list("{t}")')} & set(tables)
        for t in tables
    }
    done: list[str] = []
    while len(done) < len(tables):
        ready = sorted(t for t in tables if t not in done and deps[t] <= set(done) | {t})
        done += ready or sorted(t for t in tables if t not in done)[:1]
    return done


def _value(table: str, col: str, decl: str, i: int, cid: int, choices: dict[str, list[Any]]) -> Any:
    if col in choices:
        return choices[col][i % len(choices[col])]
    decl = decl.upper()
    if "INT" in decl:
        return 1000 + i
    if any(k in decl for k in ("REAL", "FLOA", "DOUB")):
        # Later columns later in time: CHECK (ends_at > starts_at) and the like hold.
        return 1.7e9 + cid * 1000 + i + 0.25
    if "BLOB" in decl:
        return f"{table}.{col}.{i}".encode()
    return f"{table}.{col}.{i}"


def _choices(sql: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for col, items in _IN_LIST.findall(sql):
        values: list[Any] = []
        for item in (x.strip() for x in items.split(",")):
            values.append(item.strip("'") if item.startswith("'") else int(item))
        out.setdefault(col, values)
    return out


def seed(db: Path, rows_per_table: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Insert rows into every table; returns what went in, per table (column -> value)."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA foreign_keys=ON")
    seeded: dict[str, list[dict[str, Any]]] = {}
    try:
        tables = _tables(con)
        for table in _order(con, tables):
            cols = list(con.execute(f'PRAGMA table_info("{table}")'))
            fks = {
                str(r[3]): (str(r[2]), str(r[4]))
                for r in con.execute(f'PRAGMA foreign_key_list("{table}")')
            }
            choices = _choices(tables[table])
            seeded[table] = []
            for i in range(rows_per_table):
                row: dict[str, Any] = {}
                for cid, name, decl, _nn, _default, _pk in cols:
                    if name in fks:
                        parent, pcol = fks[name]
                        parents = seeded.get(parent) or []
                        if parents:
                            row[name] = parents[i % len(parents)][pcol or "id"]
                            continue
                    row[name] = _value(table, name, decl, i, cid, choices)
                nullable = [n for _c, n, _d, notnull, _df, pk in cols if not notnull and not pk]
                for attempt in (row, {**row, **dict.fromkeys(nullable)}):
                    try:
                        con.execute(
                            f'INSERT INTO "{table}" ({", ".join(attempt)}) '
                            f"VALUES ({', '.join('?' for _ in attempt)})",
                            list(attempt.values()),
                        )
                    except sqlite3.IntegrityError as exc:
                        err = exc
                        continue
                    seeded[table].append(attempt)
                    break
                else:
                    raise AssertionError(f"cannot seed {table}: {err}")
    finally:
        con.close()
    return seeded


def missing_rows(db: Path, seeded: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Seeded rows not found (every seeded column with its value) in the upgraded database."""
    con = sqlite3.connect(db)
    lost = []
    try:
        tables = _tables(con)
        for table, rows in seeded.items():
            if table not in tables:
                lost.append(f"{table}: table gone ({len(rows)} rows)")
                continue
            for row in rows:
                where = " AND ".join(f'"{c}" IS ?' for c in row)
                n = con.execute(f'SELECT COUNT(*) FROM "{table}" WHERE {where}', list(row.values()))
                if n.fetchone()[0] != 1:
                    lost.append(f"{table}: {row}")
    finally:
        con.close()
    return lost


if __name__ == "__main__":
    for p in write_snapshots(sys.argv[1] if len(sys.argv) > 1 else "HEAD"):
        print(p)
