"""A throwaway PostgreSQL server on loopback for a test, from the machine's binaries.

``postgres_server()`` runs ``initdb`` and ``pg_ctl`` (as ``nobody`` when the tests run as
root: PostgreSQL refuses to run as root) in a fresh temporary folder that also holds the
server's Unix socket, on a free port of 127.0.0.1 with trust authentication, creates a
database and yields its URL; the server is stopped and the folder removed afterwards.
The test is skipped, saying why, only when the server binaries are not installed
(``.ci/run`` installs them from Debian's ``postgresql`` package).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def server_bindir() -> Path | None:
    """The folder of initdb and pg_ctl: PATH, else the newest Debian version folder."""
    found = shutil.which("initdb") and shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--", *argv]
    return ["su", "nobody", "-s", "/bin/sh", "-c", shlex.join(map(str, argv))]


def _run(argv: list[str], timeout: float = 60) -> None:
    proc = subprocess.run(
        _as_server_user([str(a) for a in argv]), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed: {proc.stdout}{proc.stderr}")


@contextlib.contextmanager
def postgres_server(database: str = "nndl") -> Iterator[str]:
    bindir = server_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
            "apt-get install postgresql (.ci/run does)"
        )
    # Not pytest's tmp_path: its parents are private to root, and the server runs as nobody.
    folder = Path(tempfile.mkdtemp(prefix="nndl-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(folder, user="nobody")
    data, port = folder / "data", _free_port()
    started = False
    try:
        _run(
            [
                bindir / "initdb",
                "-D",
                data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=50"
        _run(
            [
                bindir / "pg_ctl",
                "-D",
                data,
                "-l",
                folder / "server.log",
                "-w",
                "-o",
                options,
                "start",
            ]
        )
        started = True
        _run([bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", database])
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        if started:
            _run([bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)
