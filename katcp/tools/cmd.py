"""``katcp-cmd``: send one KATCP request and print the answer, for scripts.

Usage::

    katcp-cmd HOST:PORT [--timeout S] [--no-informs] [--all-informs]
              [--tls] [--cafile CA] [--cert CERT --key KEY] [--insecure] [--user USER]
              REQUEST [ARGS...]
    python -m katcp.tools.cmd 127.0.0.1:7147 sensor-value temperature

``REQUEST`` is the request name, with or without the leading ``?``. Each
``ARG`` is one argument, taken literally (so ``"a b"`` is one argument with a
space: the wire escapes are added when sending). A single ``REQUEST`` that
contains whitespace is parsed as a whole KATCP line instead, wire escapes
included: ``katcp-cmd HOST:PORT '?echo a\\_b c'``.

The reply informs and the reply are printed in KATCP wire form, one per line.
Exit status: 0 when the reply is ``ok``; 1 when it is ``fail``, ``invalid`` or
anything else; 2 when the connection fails, closes before the reply, or the
reply does not come in time (with a message on stderr).

With ``--user`` the tool logs in first (password from ``$KATCP_PASSWORD`` or asked
for); a failed login exits with status 2. TLS options: see the Security chapter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Sequence, TextIO

from ..core import KatcpClientError, KatcpSyntaxError, Message
from ._session import (
    Security,
    ToolClient,
    ToolError,
    add_security_arguments,
    parse_address,
    parse_request_line,
    security_from_args,
    wire_line,
)

PROG = "katcp-cmd"
#: Default seconds allowed for connecting, and then for the reply.
DEFAULT_TIMEOUT = 5.0

#: Exit status for an ``ok`` reply.
EXIT_OK = 0
#: Exit status for any other reply (``fail``, ``invalid``...).
EXIT_FAIL = 1
#: Exit status for connection failures, timeouts and usage errors.
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``katcp-cmd``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Send one KATCP request and print the reply informs and reply "
                    "(KATCP wire form, one per line). Exit status: 0 for an ok reply, "
                    "1 for fail/invalid, 2 for connection failure or timeout.")
    parser.add_argument("address", metavar="HOST:PORT",
                        help="server address (port 7147 if omitted; [ADDR]:PORT for IPv6)")
    parser.add_argument("request", metavar="REQUEST",
                        help="request name, '?' optional (a single quoted line with spaces "
                             "is parsed as a KATCP line, wire escapes included)")
    parser.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER,
                        help="request arguments, one per word, taken literally")
    parser.add_argument("-t", "--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds allowed for connecting, then for the reply "
                             f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--no-informs", action="store_true",
                        help="do not print the reply informs, only the reply")
    parser.add_argument("--all-informs", action="store_true",
                        help="also print asynchronous informs (#sensor-status, #log...) "
                             "received while waiting for the reply")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the client's debug log on stderr")
    add_security_arguments(parser)
    return parser


def build_request(request: str, args: Sequence[str]) -> Message:
    """Make the request message from the command-line words.

    Parameters
    ----------
    request : str
        Request name (``?`` optional), or a whole KATCP request line when it
        contains whitespace and no `args` follow.
    args : sequence of str
        Literal arguments.

    Returns
    -------
    Message

    Raises
    ------
    ValueError
        If the name or line is not valid KATCP.
    """
    if not args and len(request.split()) > 1:
        return parse_request_line(request)
    name = request.strip()
    if name.startswith("?"):
        name = name[1:]
    try:
        # os.fsencode: arguments come back as the bytes the caller's shell passed.
        return Message.request(name, *(os.fsencode(arg) for arg in args))
    except KatcpSyntaxError as exc:
        raise ValueError(str(exc)) from None


async def run_command(host: str, port: int, msg: Message, timeout: float = DEFAULT_TIMEOUT,
                      informs: bool = True, all_informs: bool = False,
                      verbose: bool = False, out: TextIO | None = None,
                      security: Security | None = None) -> int:
    """Connect, send `msg`, print the answer; return the exit status.

    Parameters
    ----------
    host, port : str, int
        Server address.
    msg : Message
        The request to send.
    timeout : float, optional
        Seconds allowed for connecting, and then for the reply.
    informs : bool, optional
        Print the reply informs.
    all_informs : bool, optional
        Also print the asynchronous informs received while waiting.
    verbose : bool, optional
        Show the client's debug log.
    out : file, optional
        Where to print (default ``sys.stdout``).
    security : Security, optional
        TLS context and login credentials.

    Returns
    -------
    int
        :data:`EXIT_OK`, :data:`EXIT_FAIL` or :data:`EXIT_ERROR`.

    Raises
    ------
    ToolError
        On connection failure, disconnection or timeout (the message says which).
    """
    if out is None:
        out = sys.stdout
    waiting = False
    show_mid = msg.mid is not None

    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    def async_inform(inform: Message) -> None:
        if waiting and all_informs:
            emit(wire_line(inform, show_mid))

    def reply_inform(inform: Message) -> None:
        if informs:
            emit(wire_line(inform, show_mid))

    client = ToolClient(host, port, auto_reconnect=False, on_inform=async_inform,
                        verbose=verbose, security=security)
    try:
        await client.connect(timeout)
        waiting = True
        try:
            reply = await client.call(msg, timeout, on_reply_inform=reply_inform)
        except asyncio.TimeoutError:
            raise ToolError(f"no reply to ?{msg.name} from {client.address} "
                            f"within {timeout:g} s") from None
        except KatcpClientError as exc:
            raise ToolError(f"could not send ?{msg.name} to {client.address}: {exc}") from None
        finally:
            waiting = False
        emit(wire_line(reply, show_mid))
    finally:
        await client.close()
    return EXIT_OK if reply.reply_ok() else EXIT_FAIL


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``katcp-cmd``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 ok reply, 1 fail/invalid reply, 2 connection failure,
        timeout or usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    try:
        host, port = parse_address(args.address)
        msg = build_request(args.request, args.args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        security = security_from_args(args, f"{host}:{port}")
        return asyncio.run(run_command(host, port, msg, timeout=args.timeout,
                                       informs=not args.no_informs,
                                       all_informs=args.all_informs, verbose=args.verbose,
                                       security=security))
    except ToolError as exc:
        sys.stdout.flush()
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
