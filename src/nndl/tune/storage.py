"""Where a study lives: an SQLite file in ``--out`` by default, or any Optuna storage.

SQLite is the embedded default rather than Optuna's journal file because Optuna's
heartbeat (a running trial's worker records that it is alive; a trial whose worker
stopped doing so is failed and queued again) works with its SQL storages only. Several
workers on one machine share the file safely with two precautions: write-ahead logging
(readers never block the writer) and a busy timeout, so a worker waits for another's
write instead of failing. For many machines, ``--storage`` takes any Optuna storage URL:
``postgresql://`` or ``mysql://`` (a server every worker reaches), or ``journal:PATH``
for Optuna's journal file on a shared file system (no heartbeat there: a killed worker's
trial stays RUNNING).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import TuneError

__all__ = ["DEFAULT_DB", "default_url", "describe", "open_storage", "creation_lock"]

DEFAULT_DB = "study.db"
# Seconds an SQLite writer waits for another worker's write (trials take minutes; a
# write takes milliseconds, but a busy disk or a report reading every trial takes longer).
SQLITE_TIMEOUT = 60
# A trial whose worker vanished is queued again at most this many times (a trial that
# kills its machine, say by running out of memory, must not be retried forever).
MAX_RETRY = 2
JOURNAL = "journal:"


def default_url(out: Path) -> str:
    return f"sqlite:///{(out / DEFAULT_DB).resolve()}"


def describe(url: str) -> str:
    """``url`` with any password hidden, for messages."""
    if url.startswith(JOURNAL):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable (a bad port, say): hide what stands where a password would
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL; None for other URLs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
        port = u.port
    except ValueError as exc:  # SQLAlchemy parses the port with int()
        raise TuneError(f"--storage {describe(url)}: bad port or host ({exc})") from None
    except ArgumentError:
        raise TuneError(
            f"--storage {url!r} is not a storage URL; expected e.g. sqlite:///PATH.db, "
            "postgresql://USER:PASSWORD@HOST:PORT/DB, mysql://... or journal:PATH"
        ) from None
    if u.get_backend_name() != "sqlite":
        if port is not None and not 0 < port < 65536:
            raise TuneError(
                f"--storage {describe(url)}: port {port} is not a port number (1 to 65535)"
            )
        return None
    if not u.database or u.database == ":memory:":
        raise TuneError(f"--storage {url}: an in-memory database cannot be shared; name a file")
    path = Path(u.database)
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise TuneError(f"--storage {url}: {path.parent} {what}")
    return path


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock beside an SQLite database while it is opened and the study
    created: workers that start together would otherwise race to create its tables."""
    path = None if url.startswith(JOURNAL) else _sqlite_path(url)
    try:
        import fcntl
    except ImportError:  # Windows: no lock; start the first worker alone
        fcntl = None
    if path is None or fcntl is None:
        yield
        return
    try:
        f = open(path.with_name(path.name + ".lock"), "a")
    except OSError as exc:
        raise TuneError(
            f"--storage {url}: cannot write in the folder {path.parent} ({exc.strerror})"
        ) from None
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _prepare_sqlite(path: Path) -> None:
    # WAL is a property of the database file: set once, every later connection uses it.
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT)) as db:
            db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise TuneError(f"--storage {path}: not a usable SQLite database ({exc})") from None


def open_storage(url: str, heartbeat: int) -> Any:
    """The Optuna storage at ``url``; a SQL one records a heartbeat every ``heartbeat``
    seconds and fails (then queues again) trials whose worker fell silent for three."""
    if url.startswith(JOURNAL):
        return _journal(url[len(JOURNAL) :])
    import optuna
    import sqlalchemy.exc

    path = _sqlite_path(url)
    given, url = url, _with_psycopg(url)
    engine_kwargs: dict[str, Any] = {}
    if path is not None:
        _prepare_sqlite(path)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=retry,
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Two workers creating a server database's tables at once: one loses the race.
            if attempt == 2:
                raise
            time.sleep(1.0)
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            raise TuneError(
                f"--storage {describe(given)}: cannot open it: {first_line(exc)}"
            ) from None
        except ImportError as exc:
            raise TuneError(
                f"--storage {describe(given)}: its database driver is not installed ({exc}); "
                "postgresql:// needs psycopg (pip install 'nndl[tune]'), mysql:// a MySQL "
                "driver such as PyMySQL (mysql+pymysql://...)"
            ) from None


def _with_psycopg(url: str) -> str:
    """A plain ``postgresql://`` URL with the driver the tune extra installs (psycopg 3):
    SQLAlchemy's default for it was psycopg2 before 2.1."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.drivername != "postgresql":
        return url
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _journal(path: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not path:
        raise TuneError("--storage journal:PATH needs a file path after 'journal:'")
    if not Path(path).parent.is_dir():
        raise TuneError(f"--storage journal:{path}: the folder {Path(path).parent} does not exist")
    try:
        return JournalStorage(JournalFileBackend(path))
    except Exception as exc:  # a damaged journal file: Optuna's own exception types vary
        raise TuneError(f"--storage journal:{path}: cannot open it: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
