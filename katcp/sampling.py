"""Server-side sensor sampling strategies.

A *strategy* decides, for one client and one sensor, when a ``#sensor-status``
inform is due.  The device server creates one per (client connection, sensor)
with :meth:`SampleStrategy.get_strategy`, calls :meth:`SampleStrategy.start`
and later :meth:`SampleStrategy.cancel`.  Whenever a report is due the
strategy calls ``inform_callback(sensor, reading)``; formatting and writing the
inform is the caller's job.

The seven strategies of KATCP v5 (``none``, ``auto``, ``period``, ``event``,
``differential``, ``event-rate`` and ``differential-rate``) are implemented
with the semantics of the reference implementations:

* setting any strategy except ``none`` reports the current reading at once;
* ``event`` reports when the value **or** the status differs from the last
  reading reported (the timestamp alone does not count);
* ``differential`` reports when ``abs(value - last_reported) > difference``
  (strictly greater) or when the status changes; it is only valid for integer,
  float and timestamp sensors;
* the ``*-rate`` strategies hold back a change that arrives sooner than
  ``shortest-period`` after the previous report and send one update carrying
  the then-current reading as soon as ``shortest-period`` expires (several
  changes collapse into one); they also report whenever ``longest-period`` has
  passed since the previous report (every report restarts that clock).

All timing uses the event loop's monotonic clock (``loop.time()`` and
``loop.call_at``), never the wall clock, so tests can drive a fake clock.
Sensor updates may come from any thread.  The strategies that sample one sensor on one
loop share one observer of the sensor (a relay, attached by :meth:`SampleStrategy.attach`),
so an update costs one call whatever the number of clients.  An update that arrives
outside the loop's thread joins the relay's queue, and the first one since the loop last
looked posts one call to the loop, which passes the queued readings, in order, to every
strategy's :meth:`~SampleStrategy.update`; a burst of updates (of any number of sensors)
costs the loop a single wake-up.  What joins the queue is the sensor's reading *at that
moment*, taken under the relay's own lock, so the loop sees readings in the order the
sensor stored them even when several threads set it at once (a reading overtaken before
its setter got there is left out, never sent after a newer one; so is a reading whose
timestamp is older than the last one, set by another thread: ``set_value`` takes the
time before it stores the reading, and clients must never see a sensor's time go back).  The queue holds at most
:attr:`SampleStrategy.MAX_THREAD_BACKLOG` readings per sensor: setters that outrun the
loop make it drop the oldest, so memory stays flat and the loop is never far behind.
"""

from __future__ import annotations

from katcp._server.strategies import (
    AGE_OF_UNIVERSE,
    SampleAuto,
    SampleDifferential,
    SampleDifferentialRate,
    SampleEvent,
    SampleEventRate,
    SampleNone,
    SamplePeriod,
    SampleStrategy,
    format_inform_v4,
    format_inform_v5,
    update_in_ioloop,
)

__all__ = [
    "AGE_OF_UNIVERSE",
    "SampleAuto",
    "SampleDifferential",
    "SampleDifferentialRate",
    "SampleEvent",
    "SampleEventRate",
    "SampleNone",
    "SamplePeriod",
    "SampleStrategy",
    "format_inform_v4",
    "format_inform_v5",
    "update_in_ioloop",
]

# Names katcp-python 0.9.3 also exposed in this module (it imported them here), which
# code still imports from it; not part of __all__.  Pinned by tests/test_katcp093_names.py.
from katcp._protocol.message import (  # noqa: E402, F401
    Message,
)
from katcp._protocol.sensor import (  # noqa: E402, F401
    Sensor,
)
from katcp.compat import (  # noqa: E402, F401
    is_bytes,
    is_text,
)
