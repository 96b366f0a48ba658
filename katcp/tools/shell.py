"""``katcp-shell``: an interactive, telnet-style KATCP console.

Usage::

    katcp-shell HOST:PORT [--timeout S] [--history-file PATH]
                [--tls] [--cafile CA] [--cert CERT --key KEY] [--insecure] [--user USER]
    python -m katcp.tools.shell 127.0.0.1:7147

Type requests as on the wire, the ``?`` optional: ``?help``,
``sensor-value temperature``, ``echo a\\_b`` (one argument ``a b``: the line
is parsed by the KATCP parser, escapes included). The reply informs and the
reply are printed as KATCP wire lines, and so is every other inform
(``#version-connect``, ``#sensor-status``, ``#log``...) as it arrives, above
the prompt. Quit with ``\\q``, ``exit``, ``quit`` or Ctrl-D; Ctrl-C stops
waiting for a reply (a late reply is still printed) or clears the line.

On a terminal (with ``prompt_toolkit``, the ``shell`` extra) the shell keeps
a history in ``~/.katcp_shell_history`` and Tab completes request names
(learned from ``?help``) and sensor names (from ``?sensor-list``) after
``?sensor-value``, ``?sensor-list`` and ``?sensor-sampling``. When standard
input is not a terminal, or prompt_toolkit is missing, lines are read plainly
so the shell can be scripted: each request waits for its reply (or the
timeout) before the next line is read, and the shell exits at end of input.

If the server goes away the shell says so on stderr and keeps reconnecting;
requests typed meanwhile are not sent (after a reconnection the shell logs in
again if ``--user`` was given). Exit status: 0 after quitting, 2 if the first
connection (or login) fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from typing import Any, Iterator, List, Sequence

from ..core import KatcpClientError, Message
from ._session import (
    ConnectFailed,
    ConnectionLost,
    Security,
    ToolClient,
    ToolError,
    add_security_arguments,
    parse_address,
    parse_request_line,
    security_from_args,
    wire_line,
)
from ._shell_complete import CompletionTable, make_completer, names_from_informs

PROG = "katcp-shell"
#: Default seconds allowed for connecting, and for each reply.
DEFAULT_TIMEOUT = 10.0
#: Default history file (``~`` is expanded).
DEFAULT_HISTORY = "~/.katcp_shell_history"
#: Lines that end the session.
QUIT_WORDS = frozenset({"\\q", "\\quit", "exit", "quit"})
#: Lines that show the shell's own help.
HELP_WORDS = frozenset({"\\h", "\\help", "\\?"})

SHELL_HELP = """\
Type a KATCP request, '?' optional: e.g. ?help, ?sensor-list, ?sensor-value NAME.
Arguments are separated by spaces and use KATCP escapes: \\_ (space), \\\\ (backslash),
\\@ (empty argument), \\n, \\t, \\e, \\0. Replies and informs are shown as wire lines.
Shell commands: \\q, exit or quit (also Ctrl-D) to leave; \\h for this help.
Ctrl-C stops waiting for a reply; Tab completes request and sensor names."""


def _prompt_toolkit_available() -> bool:
    try:
        import prompt_toolkit  # noqa: F401
    except ImportError:
        return False
    return True


class _StdinReader:
    """Reads standard input lines in a daemon thread into an asyncio queue.

    Bytes are decoded as UTF-8 with ``surrogateescape`` so that any byte can
    be sent. A file descriptor is read with :func:`os.read`, not through the
    buffered stream: a daemon thread blocked in a buffered read would abort
    the interpreter at exit.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, name="katcp-shell-stdin",
                                        daemon=True)
        self._thread.start()

    def _put(self, item: str | OSError | None) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop has closed: the shell is gone
            return False
        return True

    def _lines(self) -> Iterator[bytes | str]:
        if self._fd is None:
            yield from iter(self._stream.readline, "")
            return
        pending = b""
        while True:
            chunk = os.read(self._fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from lines
        if pending:
            yield pending

    def _run(self) -> None:
        try:
            for line in self._lines():
                if isinstance(line, bytes):
                    line = line.decode("utf-8", "surrogateescape")
                if not self._put(line):
                    return
        except (OSError, ValueError) as exc:
            self._put(OSError(str(exc)))
        self._put(None)

    async def readline(self) -> str | None:
        """The next line, or None at end of input.

        Raises
        ------
        OSError
            If standard input could not be read.
        """
        item = await self._queue.get()
        if isinstance(item, OSError):
            raise item
        return item


class Shell:
    """The ``katcp-shell`` session: one connection, a read-request-print loop.

    Parameters
    ----------
    host, port : str, int
        Server address.
    timeout : float, optional
        Seconds allowed for connecting and for each reply.
    interactive : bool or None, optional
        Use prompt_toolkit (history, completion). None decides: yes when
        standard input and output are terminals and prompt_toolkit imports.
    history_file : str or None, optional
        History file of the interactive mode (None keeps history in memory).
    verbose : bool, optional
        Show the client's debug log on stderr.
    pt_input, pt_output : optional
        prompt_toolkit input and output to use instead of the terminal
        (for tests and embedding); they imply ``interactive=True``.
    stdin : file, optional
        Input of the plain mode (default ``sys.stdin``).
    security : Security, optional
        TLS context and login credentials.
    """

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT,
                 interactive: bool | None = None,
                 history_file: str | None = DEFAULT_HISTORY, verbose: bool = False,
                 pt_input: Any = None, pt_output: Any = None, stdin: Any = None,
                 security: Security | None = None) -> None:
        self.host = host
        self.security = security
        self.port = port
        self.timeout = timeout
        self.stdin = stdin if stdin is not None else sys.stdin
        if pt_input is not None or pt_output is not None:
            interactive = True
        if interactive is None:
            interactive = self.stdin.isatty() and sys.stdout.isatty()
        if interactive and pt_input is None and not _prompt_toolkit_available():
            interactive = False  # plain lines: install the "shell" extra for more
        self.interactive = interactive
        self.history_file = history_file
        self.verbose = verbose
        self._pt_input = pt_input
        self._pt_output = pt_output
        self.names = CompletionTable()
        self.client: ToolClient | None = None
        self._lost = False
        self._closing = False
        self._background: set = set()

    # ------------------------------------------------------------------ output
    @staticmethod
    def show(line: str) -> None:
        """Print a wire line (through prompt_toolkit's stdout proxy when active)."""
        print(line, file=sys.stdout, flush=True)

    @staticmethod
    def notice(text: str) -> None:
        """Print a shell message (``*** text``) on stderr."""
        print(f"*** {text}", file=sys.stderr, flush=True)

    @property
    def _client(self) -> ToolClient:
        """The client; :meth:`run` creates it before anything that uses it runs."""
        client = self.client
        assert client is not None, "the shell's client exists once run() starts"
        return client

    # ------------------------------------------------------------------ client events
    def _on_inform(self, msg: Message) -> None:
        self.show(wire_line(msg))
        if msg.name == "interface-changed" and self.interactive:
            self._spawn(self.refresh_names())

    def _on_connection(self, connected: bool) -> None:
        if self._closing:
            return
        address = self._client.address
        if not connected:
            self._lost = True
            self.notice(f"connection to {address} lost; reconnecting "
                        "(\\q or Ctrl-D to quit)")
        elif self._lost:
            self._lost = False
            self.notice(f"reconnected to {address}")
            if self.interactive:
                self._spawn(self.refresh_names())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ names
    async def _names(self, request: str) -> List[str] | None:
        informs: List[Message] = []
        try:
            reply = await self._client.call(Message.request(request), self.timeout,
                                           on_reply_inform=informs.append)
        except (asyncio.TimeoutError, ConnectionLost, KatcpClientError):
            return None
        return names_from_informs(informs) if reply.reply_ok() else None

    async def refresh_names(self) -> None:
        """Learn request names (``?help``) and sensor names (``?sensor-list``)."""
        requests = await self._names("help")
        sensors = await self._names("sensor-list")
        self.names.update(requests=requests, sensors=sensors)

    # ------------------------------------------------------------------ requests
    async def send(self, msg: Message) -> None:
        """Send `msg`, print its reply informs and reply as they arrive.

        Waits at most :attr:`timeout` seconds, or until Ctrl-C in the
        interactive mode; a reply arriving later is still printed.
        """
        client = self._client
        show_mid = msg.mid is not None

        def show(reply: Message) -> None:
            self.show(wire_line(reply, show_mid))

        if not client.is_connected():
            self.notice(f"not connected to {client.address} (reconnecting); "
                        f"?{msg.name} not sent")
            return
        task = asyncio.ensure_future(
            client.call(msg, self.timeout, on_reply_inform=show, on_late_reply=show))
        interruptible = self._catch_sigint(task)
        try:
            show(await asyncio.shield(task))
        except asyncio.TimeoutError:
            self.notice(f"no reply to ?{msg.name} within {self.timeout:g} s "
                        "(a late reply will still be shown)")
        except asyncio.CancelledError:
            if not task.cancelled():
                task.cancel()
                raise  # the shell itself is being cancelled
            self.notice(f"stopped waiting for ?{msg.name} (a late reply will still be shown)")
        except ConnectionLost as exc:
            self.notice(str(exc))
        except KatcpClientError as exc:
            self.notice(f"?{msg.name} not sent: {exc}")
        finally:
            if interruptible:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _catch_sigint(self, task: asyncio.Future) -> bool:
        """Let Ctrl-C cancel `task` (interactive mode, main thread only)."""
        if not self.interactive:
            return False
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, task.cancel)
        except (NotImplementedError, RuntimeError, ValueError):
            return False
        return True

    async def handle_line(self, line: str) -> bool:
        """Act on one typed line; return False when the shell should quit."""
        text = line.strip()
        if not text:
            return True
        if text in QUIT_WORDS:
            return False
        if text in HELP_WORDS:
            self.show(SHELL_HELP)
            return True
        if text.startswith("\\"):
            self.notice(f"unknown shell command {text.split()[0]} (\\h for help)")
            return True
        try:
            msg = parse_request_line(text)
        except ValueError as exc:
            self.notice(f"bad request: {exc}")
            return True
        await self.send(msg)
        return True

    # ------------------------------------------------------------------ loops
    async def _plain_loop(self) -> None:
        reader = _StdinReader(self.stdin)
        prompt = f"{self._client.address}> " if self.stdin.isatty() else ""
        while True:
            if prompt:
                sys.stdout.write(prompt)
                sys.stdout.flush()
            try:
                line = await reader.readline()
            except OSError as exc:
                self.notice(f"cannot read input: {exc}")
                return
            if line is None or not await self.handle_line(line):
                return

    def _history(self) -> Any:
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        if self.history_file:
            path = os.path.expanduser(self.history_file)
            try:
                with open(path, "a", encoding="utf-8"):
                    pass
                return FileHistory(path)
            except OSError as exc:
                self.notice(f"history not saved: cannot write {path}: {exc.strerror}")
        return InMemoryHistory()

    async def _interactive_loop(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.patch_stdout import patch_stdout

        session: PromptSession = PromptSession(
            history=self._history(), completer=make_completer(self.names),
            complete_while_typing=False, auto_suggest=AutoSuggestFromHistory(),
            input=self._pt_input, output=self._pt_output)
        prompt = f"{self._client.address}> "
        with patch_stdout(raw=True):
            while True:
                try:
                    line = await session.prompt_async(prompt)
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    return
                if not await self.handle_line(line):
                    return

    async def run(self) -> int:
        """Connect and run the shell until the user quits; return the exit status."""
        self.client = ToolClient(self.host, self.port, auto_reconnect=True,
                                 on_inform=self._on_inform,
                                 on_connection=self._on_connection, verbose=self.verbose,
                                 security=self.security)
        try:
            try:
                await self.client.connect(self.timeout)
            except ConnectFailed as exc:
                print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
                return 2
            if self.interactive:
                await self.refresh_names()
                await self._interactive_loop()
            else:
                await self._plain_loop()
            return 0
        finally:
            self._closing = True
            for task in list(self._background):
                task.cancel()
            await self.client.close()


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``katcp-shell``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Interactive KATCP console: type requests ('?' optional), see replies "
                    "and informs as KATCP wire lines. \\q, exit or Ctrl-D quits.")
    parser.add_argument("address", metavar="HOST:PORT",
                        help="server address (port 7147 if omitted; [ADDR]:PORT for IPv6)")
    parser.add_argument("-t", "--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds allowed for connecting and for each reply "
                             f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--history-file", default=DEFAULT_HISTORY,
                        help=f"history file of the interactive mode (default {DEFAULT_HISTORY})")
    parser.add_argument("--no-history", action="store_true",
                        help="keep no history file")
    parser.add_argument("--plain", action="store_true",
                        help="read plain lines even on a terminal (no prompt_toolkit)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the client's debug log on stderr")
    add_security_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``katcp-shell``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 after quitting, 2 if the connection could not be made
        (or on a usage error), 130 if interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    try:
        host, port = parse_address(args.address)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        security = security_from_args(args, f"{host}:{port}")
    except ToolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    shell = Shell(host, port, timeout=args.timeout,
                  interactive=False if args.plain else None,
                  history_file=None if args.no_history else args.history_file,
                  verbose=args.verbose, security=security)
    try:
        return asyncio.run(shell.run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
