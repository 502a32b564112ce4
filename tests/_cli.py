"""Running the ``nndl`` command in the test process."""

from __future__ import annotations

import contextlib
import io

from nndl import cli


def run_cli(*argv) -> tuple[int, str, str]:
    """``cli.main(argv)`` in this process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()
