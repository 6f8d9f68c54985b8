"""Argument parsing and the error boundary: an InfraError becomes one line on stderr, never a
traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from deploy.localinfra import commands
from deploy.localinfra.config import Layout
from deploy.localinfra.errors import InfraError
from deploy.localinfra.registry import SERVERS

EPILOG = (
    f"servers: {', '.join(SERVERS)} (default: all). Cache: $REELFORGE_CACHE "
    "(default ~/.cache/reelforge). A server whose endpoint variable (KAFKA_BOOTSTRAP_SERVERS, "
    "JOB_STORE_URI, MONGODB_URI, S3_ENDPOINT, PROMETHEUS_URL) points elsewhere is external and "
    "left alone."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.localinfra",
        epilog=EPILOG,
        description="Install and run the real servers locally.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("install", "install pinned versions into the cache"),
        ("up", "install if needed and start; wait until healthy"),
        ("down", "stop the servers we started"),
    ):
        sub.add_parser(name, help=help_text).add_argument("names", nargs="*", metavar="NAME")
    sub.add_parser("status", help="show name, state, pid, address, version")
    sub.add_parser("reload-prometheus", help="make our Prometheus re-read its config (SIGHUP)")
    sub.add_parser("env", help="print export lines for the endpoints")
    run = sub.add_parser("run", help="start what is needed, run CMD, stop what was started")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse ``argv`` and dispatch; returns the exit code."""
    args = build_parser().parse_args(list(argv))
    environ = dict(os.environ)
    layout = Layout.from_env(environ)
    try:
        return _dispatch(args, layout, environ)
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace, layout: Layout, environ: dict[str, str]) -> int:
    out = sys.stdout
    if args.command == "install":
        return commands.install(args.names, layout, environ, out)
    if args.command == "up":
        return commands.up(args.names, layout, environ, out)
    if args.command == "down":
        return commands.down(args.names, layout, environ, out)
    if args.command == "status":
        return commands.status(layout, environ, out)
    if args.command == "env":
        return commands.env(environ, out)
    if args.command == "reload-prometheus":
        return commands.reload_prometheus(layout, out)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return commands.run(cmd, layout, environ, sys.stderr)  # keep CMD's stdout clean
