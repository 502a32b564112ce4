"""Shared fixtures: a tiny synthetic CIFAR-10, the real one when present, no downloads."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import threading
from pathlib import Path

import pytest
from _cifar import real_cifar_dir, write_synthetic_cifar10

__all__ = ["write_synthetic_cifar10", "real_cifar_dir"]


@pytest.fixture(autouse=True, scope="session")
def _no_cifar_download():
    """Point the downloads (CIFAR-10, nndl.datasets) at a closed local port unless a URL is
    set already.

    A test that forgets ``data_dir`` then fails at once with the "where to put the files"
    error instead of fetching 170 MB into the user's cache.
    """
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("NNDL_CIFAR10_URL"):
            mp.setenv("NNDL_CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
        if not os.environ.get("NNDL_DATASETS_URL"):  # MNIST, Fashion-MNIST, CIFAR-100
            mp.setenv("NNDL_DATASETS_URL", "http://127.0.0.1:9")
        yield


@pytest.fixture(autouse=True)
def _sigint_raises_keyboard_interrupt():
    """SIGINT raises KeyboardInterrupt in this process, as in a terminal, during each test.

    Python sets that up at startup only if SIGINT was not ignored, and a shell leaves it
    ignored for a background job (``pytest &``, nohup): the Ctrl-C tests that signal this
    process would then see nothing. A handler someone installed is left alone.
    """
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.SIG_DFL):
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def tiny_cifar(tmp_path: Path) -> Path:
    """``cifar-10-batches-py`` with 5 x 20 training and 20 test images (class-dependent)."""
    return write_synthetic_cifar10(tmp_path / "cifar")


@pytest.fixture(scope="session")
def real_cifar() -> Path:
    """The real ``cifar-10-batches-py`` folder; skips when it is not available."""
    return real_cifar_dir()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (random port); yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
