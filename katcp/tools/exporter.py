"""``katcp-exporter``: serve the sensors of a fleet of KATCP devices and NCP nodes to Prometheus.

::

    katcp-exporter --config fleet.toml [--listen HOST:PORT] [--shard I/N] [--progress]

reads the devices (the manager's ``[devices.NAME]`` syntax) and the ``[exporter]`` table
(:mod:`katcp.exporter.settings`), keeps shard I of N of the devices (rendezvous hashing of
their names, :mod:`katcp.exporter.shard`), and serves ``/metrics`` (default port 9700) until
SIGINT or SIGTERM.  On a terminal (or with ``--progress``) the sync progress is shown on
stderr.  Exit status: 0 after a clean stop, 2 for a bad configuration or arguments, 1 if the
listen address cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Sequence, TextIO, Tuple

from katcp.exporter import Exporter, ShardError, Target, parse_shard, select
from katcp.exporter.service import DEFAULT_PORT, configure_process
from katcp.exporter.settings import ConfigError, load_config, parse_listen
from katcp.tools.fleetsim import raise_fd_limit

__all__ = ["build_parser", "main", "run"]

log = logging.getLogger("katcp.exporter")


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``katcp-exporter``."""
    parser = argparse.ArgumentParser(
        prog="katcp-exporter",
        description="Serve the sensors of KATCP devices and NCP nodes at /metrics "
                    "(Prometheus / OpenMetrics).")
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="TOML file: [devices.NAME] tables and an optional [exporter] table")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help=f"address of /metrics (default: [exporter] listen, "
                             f"else 0.0.0.0:{DEFAULT_PORT})")
    parser.add_argument("--shard", metavar="I/N", default="0/1",
                        help="watch shard I (0..N-1) of N of the devices (default 0/1: all)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show sync progress on stderr (default: if it is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never show sync progress")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


async def run(targets: Sequence[Target], listen: Tuple[str, int],
              progress: TextIO | None = None,
              stop_event: asyncio.Event | None = None, openmetrics: bool = False) -> None:
    """Run an exporter of `targets` in the running loop until SIGINT, SIGTERM or `stop_event`.

    Parameters
    ----------
    targets : sequence of Target
        Devices to watch.
    listen : (str, int)
        Address of ``/metrics``.
    progress : file-like, optional
        Stream for the sync progress line.
    stop_event : asyncio.Event, optional
        Stop when it is set.
    openmetrics : bool
        Serve OpenMetrics to clients that ask for it.
    """
    exporter = Exporter(targets, listen, progress=progress, openmetrics=openmetrics)
    await exporter.start()
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (RuntimeError, ValueError):  # not the main thread
            pass
    try:
        await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await exporter.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``katcp-exporter``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        index, count = parse_shard(args.shard)
        targets, settings = load_config(args.config)
        listen = parse_listen(args.listen) if args.listen else (
            settings.listen or ("0.0.0.0", DEFAULT_PORT))
    except (ConfigError, ShardError) as exc:
        print(f"katcp-exporter: error: {exc}", file=sys.stderr)
        return 2
    chosen = set(select([t.name for t in targets], index, count))
    targets = tuple(t for t in targets if t.name in chosen)
    log.info("Shard %d/%d: %d device(s)", index, count, len(targets))
    show = sys.stderr.isatty() if args.progress is None else args.progress
    raise_fd_limit(len(targets) + 256)
    configure_process()
    try:
        asyncio.run(run(targets, listen, sys.stderr if show else None,
                        openmetrics=settings.openmetrics))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"katcp-exporter: error: cannot serve on {listen[0]}:{listen[1]}: {exc}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
