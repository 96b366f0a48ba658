"""Tab completion for ``katcp-shell``: request names and sensor names.

:class:`CompletionTable` holds what the shell learned from the server
(``?help`` and ``?sensor-list``) and answers "what can complete this line?"
without any terminal library, so it is easy to test; :func:`make_completer`
wraps it in a ``prompt_toolkit`` completer.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, List, Sequence, Tuple

#: Requests whose first argument is a sensor name (or, for ``sensor-list``,
#: a name or a ``/regex/``); ``sensor-sampling`` also takes a comma-separated
#: list of names (KATCP 5.1 bulk sampling).
SENSOR_REQUESTS = frozenset({"sensor-value", "sensor-list", "sensor-sampling"})
#: Requests whose first argument is a request name.
REQUEST_REQUESTS = frozenset({"help", "request-timeout-hint"})

_WORD_RE = re.compile(r"\S+")


class CompletionTable:
    """Request and sensor names known to the shell, and the completion rules.

    Parameters
    ----------
    requests : iterable of str, optional
        Request names.
    sensors : iterable of str, optional
        Sensor names.
    """

    def __init__(self, requests: Iterable[str] = (), sensors: Iterable[str] = ()) -> None:
        self.requests: List[str] = sorted(set(requests))
        self.sensors: List[str] = sorted(set(sensors))

    def update(self, requests: Iterable[str] | None = None,
               sensors: Iterable[str] | None = None) -> None:
        """Replace the known request and/or sensor names."""
        if requests is not None:
            self.requests = sorted(set(requests))
        if sensors is not None:
            self.sensors = sorted(set(sensors))

    def complete(self, text: str) -> Tuple[List[str], int]:
        """Candidates to complete the last word of `text` (the line up to the cursor).

        Parameters
        ----------
        text : str
            The line typed so far, up to the cursor.

        Returns
        -------
        candidates : list of str
            Full replacements of the part being completed.
        length : int
            Number of characters before the cursor that a candidate replaces.
        """
        words = _WORD_RE.findall(text)
        at_new_word = not text or text[-1].isspace()
        current = "" if at_new_word else words[-1]
        index = len(words) if at_new_word else len(words) - 1
        if index == 0:
            prefix = current[1:] if current.startswith("?") else current
            return [n for n in self.requests if n.startswith(prefix)], len(prefix)
        if index != 1:
            return [], 0
        request = words[0].lstrip("?")
        if request in SENSOR_REQUESTS:
            part = current
            if request == "sensor-sampling" and "," in current:
                part = current.rsplit(",", 1)[1]
            return [n for n in self.sensors if n.startswith(part)], len(part)
        if request in REQUEST_REQUESTS:
            return [n for n in self.requests if n.startswith(current)], len(current)
        return [], 0


def names_from_informs(informs: Sequence[Any]) -> List[str]:
    """First arguments of ``#help``/``#sensor-list`` informs, decoded."""
    names = []
    for inform in informs:
        if inform.arguments:
            names.append(inform.arguments[0].decode("utf-8", "replace"))
    return names


def make_completer(table: CompletionTable) -> Any:
    """Return a ``prompt_toolkit`` completer backed by `table`.

    Raises
    ------
    ImportError
        If prompt_toolkit is not installed.
    """
    from prompt_toolkit.completion import Completer, Completion

    class KatcpCompleter(Completer):
        """Completes request names, and sensor names after sensor requests."""

        def get_completions(self, document, complete_event):
            candidates, length = table.complete(document.text_before_cursor)
            for candidate in candidates:
                yield Completion(candidate, start_position=-length)

    return KatcpCompleter()
