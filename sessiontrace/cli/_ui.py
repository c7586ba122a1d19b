"""``sessiontrace ui``: serve the read-only web view's API over the store, on this machine.

It binds to 127.0.0.1 unless told otherwise; any other host is said out loud, because the
data is then readable by anyone who can reach the port. Ctrl-C stops it with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import webbrowser
from typing import TextIO

from sessiontrace.cli._errors import CommandError
from sessiontrace.store import SessionStore
from sessiontrace.ui import MISSING

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``ui`` command to the CLI's parser."""
    parser = subparsers.add_parser(
        "ui",
        parents=parents,
        help="serve the store's sessions to a browser, read-only, on this machine",
        description="Serve a read-only web view of the store: its pages at / and its JSON API "
        "under /api (see docs/ui.md). Needs pip install 'sessiontrace[ui]'. Binds to "
        "127.0.0.1 unless --host says otherwise. Stop it with Ctrl-C.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"the address to listen on (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"the port (default {DEFAULT_PORT})"
    )
    parser.add_argument("--open", action="store_true", help="open the view in a browser")
    parser.set_defaults(run=run)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1 to 65535")
    return int(text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace, store: SessionStore, out: TextIO) -> int:
    """Serve the API until Ctrl-C; returns the exit code."""
    try:
        import uvicorn

        from sessiontrace.ui._app import create_app
    except ImportError:
        raise CommandError(MISSING, exit_code=2) from None  # a usage error, as cli._main says
    url = f"http://{args.host}:{args.port}/"
    if not is_loopback(args.host):
        args.stderr.write(
            f"sessiontrace: warning: serving on {args.host}: anyone who can reach this "
            "address can read every session in the store. Use --host 127.0.0.1 to keep it "
            "on this machine.\n"
        )
    out.write(f"sessiontrace ui: serving {store.path} read-only at {url} (Ctrl-C stops)\n")
    out.flush()
    if args.open:
        webbrowser.open(url)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store.path), host=args.host, port=args.port, log_level="warning"
        )
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn handles Ctrl-C; a second one too
        server.run()
    out.write("sessiontrace ui: stopped\n")
    return 0
