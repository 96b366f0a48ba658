"""Sensor name patterns sent by clients: an exact name, or a ``/regex/`` searched in names.

A client's regular expression is untrusted input, so it is compiled by RE2
(``google-re2``), whose matching time is linear in the length of the name whatever the
pattern, never by Python's backtracking :mod:`re` (``/(a+)+$/`` takes seconds there).
The pattern's length and RE2's memory are capped too, which bounds its compile time
to a few milliseconds.  RE2 has no backreferences or lookaround; a pattern that needs
them is refused with a message that says so.

:func:`match_names` does the matching in slices of a few milliseconds, so a server can
give the loop back to other clients between slices.
"""

from __future__ import annotations

import re
import time
from typing import Callable, Iterable, Iterator, List, Tuple, TypeVar

import re2

__all__ = ["construct_name_filter", "match_names", "MAX_NAME_PATTERN_LENGTH"]

#: The longest regular expression (the text between the slashes) accepted from a client.
MAX_NAME_PATTERN_LENGTH = 256

#: RE2's memory budget for one compiled pattern (program and DFA cache), in bytes.
_RE2_MAX_MEM = 256 * 1024

_T = TypeVar("_T")


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False  # the error goes to the client, not to stderr
    return options


_OPTIONS = _re2_options()


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def compile_name_pattern(regex: str) -> Callable[[str], bool]:
    """Compile a client's regular expression; return ``search(name) -> bool``.

    Raises
    ------
    re.error
        The pattern is too long, is not valid RE2 syntax, or needs more memory than
        a sensor name pattern may use.  The message says which, for the client.

    """
    if len(regex) > MAX_NAME_PATTERN_LENGTH:
        raise re.error(f"pattern of {len(regex)} characters is longer than the limit of "
                       f"{MAX_NAME_PATTERN_LENGTH} (MAX_NAME_PATTERN_LENGTH)")
    try:
        compiled = re2.compile(regex, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise re.error(f"{_short(str(reason))} (patterns are RE2 regular expressions: "
                       "no backreferences or lookaround, at most "
                       f"{_RE2_MAX_MEM // 1024} KiB compiled)") from None
    search = compiled.search
    return lambda name: search(name) is not None


def construct_name_filter(pattern: str | None) -> Tuple[bool, Callable[[str], bool]]:
    """Return a function for filtering sensor names based on a pattern.

    Parameters
    ----------
    pattern : None or str
        If None, the returned function matches all names.
        If pattern starts and ends with '/' the text between the slashes
        is used as a regular expression to search the names (RE2 syntax, at most
        `MAX_NAME_PATTERN_LENGTH` characters, matched in linear time).
        Otherwise the pattern must match the name of the sensor exactly.

    Returns
    -------
    exact : bool
        Return True if pattern is expected to match exactly. Used to
        determine whether having no matching sensors constitutes an error.
    filter_func : f(str) -> bool
        Function for determining whether a name matches the pattern.

    Raises
    ------
    re.error
        The regular expression is invalid, too long or too large.

    """
    if pattern is None:
        return False, lambda name: True
    if pattern.startswith("/") and pattern.endswith("/"):
        return False, compile_name_pattern(pattern[1:-1])
    return True, lambda name: name == pattern


def match_names(name_filter: Callable[[str], bool], items: Iterable[Tuple[str, _T]],
                slice_seconds: float = 0.002) -> Iterator[Tuple[List[Tuple[str, _T]], bool]]:
    """Filter ``(name, value)`` pairs by name, in slices of about `slice_seconds`.

    A generator: each ``next()`` matches names for at most about `slice_seconds` and
    yields ``(matches, last)``, the matches of that slice (possibly none) and whether
    it was the last slice; a caller on an event loop gives the loop back between slices.

    """
    matched: List[Tuple[str, _T]] = []
    clock = time.perf_counter
    deadline = clock() + slice_seconds
    for i, item in enumerate(items, 1):
        if name_filter(item[0]):
            matched.append(item)
        # One RE2 search is a microsecond or so; a long name and a large pattern can
        # make it a millisecond, so look at the clock often.
        if not i & 3 and clock() > deadline:
            yield matched, False
            matched = []
            deadline = clock() + slice_seconds
    yield matched, True
