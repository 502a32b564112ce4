"""Build the documentation site, serve it on loopback and photograph a few pages with
headless Chromium, to look at what a reader sees (code blocks, tables, plots, math).

    python tools/screenshot_docs.py --out "$(mktemp -d)"     # then open the PNGs it lists

The site is built into a temporary folder (``mkdocs build --strict``; the tutorial
notebooks are executed unless ``--no-execute``), served by ``http.server`` on 127.0.0.1
(a free port, only while the pages are taken), and each page is taken with Debian's
``chromium`` (``apt-get install chromium``) at ``--width`` x ``--height``, given at most
``--timeout`` seconds. Nothing is written into the repository; keep the screenshots out
of it too.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PAGES = {
    "home": "",
    "tutorial": "tutorials/02_training_a_cnn/",
    "reference": "reference/api/nndl/layers/",
    "cli": "reference/cli/",
}
"""Screenshot name -> page path in the site."""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def build(site: Path, execute: bool) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    if not execute:
        env["NNDL_DOCS_EXECUTE"] = "0"
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("screenshot_docs: error: no chromium found; apt-get install chromium")


def shoot(browser: str, url: str, png: Path, width: int, height: int, timeout: float) -> None:
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--window-size={width},{height}", "--virtual-time-budget=5000",
        f"--screenshot={png}", url,
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
    if not png.is_file():
        raise RuntimeError(f"screenshot_docs: chromium wrote no {png} for {url}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="screenshot_docs", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    p.add_argument("--site", type=Path, help="an already built site (skips the build)")
    p.add_argument("--no-execute", action="store_true", help="notebooks without outputs")
    p.add_argument(
        "--page",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another page to take (a path in the site, such as results/); repeatable",
    )
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2400)
    p.add_argument("--timeout", type=float, default=120, help="seconds per page (default 120)")
    args = p.parse_args(argv)
    pages = dict(PAGES)
    for item in args.page:
        name, sep, path = item.partition("=")
        if not sep or not name.isidentifier():
            p.error(f"--page: expected NAME=PATH with NAME a plain word, got {item!r}")
        pages[name] = path
    browser = chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site or Path(tmp) / "site"
        if args.site is None:
            build(site, execute=not args.no_execute)
        handler = functools.partial(_QuietHandler, directory=str(site))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}/"
            for name, page in pages.items():
                png = args.out / f"{name}.png"
                shoot(browser, base + page, png, args.width, args.height, args.timeout)
                print(png)
        finally:
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
