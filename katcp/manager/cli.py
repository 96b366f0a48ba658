"""``katcp-manager --config FILE``: run the manager until interrupted."""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import logging
import signal
import sys
from typing import List

from .config import ManagerConfig, load_manager_config, parse_address
from .server import ManagerServer

__all__ = ["main", "run"]

log = logging.getLogger("katcp.manager")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="katcp-manager",
        description="Put a fleet of KATCP devices and NCP nodes behind one KATCP endpoint.")
    parser.add_argument("--config", "-c", required=True, help="fleet TOML file")
    parser.add_argument("--listen", help="override [manager] listen (host:port)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (default INFO)")
    parser.add_argument("--request-timeout", type=float, default=60.0,
                        help="seconds a proxied request may take (default 60)")
    return parser


async def run(manager: ManagerServer, stop: asyncio.Event) -> None:
    """Start `manager`, wait for `stop`, then stop it."""
    await manager.start_manager()
    try:
        await stop.wait()
    finally:
        await manager.stop_manager()


async def _main(args: argparse.Namespace, config: ManagerConfig) -> int:
    if args.listen:
        config = dataclasses.replace(config, listen=parse_address(args.listen))
    manager = ManagerServer(config, request_timeout=args.request_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises instead
            pass
    await run(manager, stop)
    return 0


def main(argv: List[str] | None = None) -> int:
    """Entry point of the ``katcp-manager`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_manager_config(args.config)
    except (OSError, ValueError) as exc:
        print(f"katcp-manager: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args, config))
    except (OSError, ValueError) as exc:
        print(f"katcp-manager: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
