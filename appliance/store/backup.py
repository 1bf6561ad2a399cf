"""SQL for backups (appliance.privacy.backup): an online snapshot, and checks on database files.

These work on database *files* with their own short-lived `sqlite3` connections, not on the
appliance's aiosqlite connection: a backup runs in another process (the systemd unit sees the
state directory read-only) while the appliance keeps writing, and verify/restore inspect a
copy in a scratch directory. All functions block; callers run them in a thread.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from appliance.store.base import StoreError


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connect(path: Path, *, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreError(f"no database file at {path}")
    uri = path.resolve().as_uri() + ("?mode=ro" if readonly else "")
    uri += "&immutable=1" if immutable else ""
    try:
        return sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc


def _copy(src: Path, dest: Path, *, immutable: bool) -> None:
    with (
        closing(_connect(src, readonly=True, immutable=immutable)) as source,
        closing(sqlite3.connect(dest, isolation_level=None)) as copy,
    ):
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
        copy.execute("VACUUM")


def _state(src: Path) -> tuple[int, int, bool]:
    st = src.stat()
    return st.st_mtime_ns, st.st_size, Path(f"{src}-wal").exists()


def snapshot(src: Path, dest: Path) -> None:
    """A consistent copy of the live database `src` (WAL mode, written by another process).

    The source is opened read-only, so this works where the state directory is mounted
    read-only (the backup unit): SQLite reads a WAL database there while its -wal/-shm files
    exist, which they do while the appliance runs. The backup API copies every page in one
    step, inside one read transaction: the copy is the database as of one commit, writers
    carry on. With the appliance stopped those files are gone and cannot be created on a
    read-only mount; then nobody writes, so the file is read as immutable, and the copy is
    kept only if the file (and its absent WAL) did not change meanwhile. The copy is then
    VACUUMed: free pages that might hold fragments of deleted rows (written before
    secure_delete was on) do not travel into an archive, and it ends as one file.
    """
    try:
        _copy(src, dest, immutable=False)
    except sqlite3.OperationalError as exc:
        before = _state(src)
        if before[2]:
            raise StoreError(f"cannot snapshot {src}: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"cannot snapshot {src}: {exc}") from exc
    else:
        return
    dest.unlink(missing_ok=True)
    try:
        _copy(src, dest, immutable=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot snapshot {src}: {exc}") from exc
    if _state(src) != before:
        dest.unlink(missing_ok=True)
        raise StoreError(f"{src} changed while it was copied read-only; try again")


def schema_version(path: Path) -> int:
    with closing(_connect(path, readonly=True)) as con:
        return int(con.execute("PRAGMA user_version").fetchone()[0])


def integrity(path: Path) -> list[str]:
    """`PRAGMA integrity_check` lines: `["ok"]` for a sound file."""
    try:
        with closing(_connect(path, readonly=True)) as con:
            return [str(r[0]) for r in con.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:  # "file is not a database" and the like
        return [str(exc)]


def table_counts(path: Path) -> dict[str, int]:
    """Rows per table (virtual tables and their shadow tables included)."""
    with closing(_connect(path, readonly=True)) as con:
        names = [
            str(r[0])
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {
            n: int(con.execute(f"SELECT COUNT(*) FROM {_quote(n)}").fetchone()[0]) for n in names
        }


def kek_ids(path: Path) -> set[str]:
    """Ids of the master keys the file's key ring and subject keys are wrapped under."""
    with closing(_connect(path, readonly=True)) as con:
        rows = con.execute(
            "SELECT kek_id FROM keyring UNION SELECT kek_id FROM subjects"
        ).fetchall()
    return {str(r[0]) for r in rows}


def recording_paths(path: Path) -> set[str]:
    """Where the database says its encrypted recordings are (absolute paths)."""
    with closing(_connect(path, readonly=True)) as con:
        return {str(r[0]) for r in con.execute("SELECT path FROM recordings")}


def vacuum(path: Path) -> None:
    """Rebuild the file (no free pages left with erased bytes) and fold in its WAL."""
    try:
        with closing(_connect(path, readonly=False)) as con:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.execute("VACUUM")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot vacuum {path}: {exc}") from exc
