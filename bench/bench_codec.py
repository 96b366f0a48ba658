#!/usr/bin/env python
"""Benchmark the KATCP codec against aiokatcp, measured in the same run.

Workload: a realistic mix of lines -- requests with message ids, replies,
``#sensor-status`` informs, escaped arguments (``#log``, ``#help``), and one
line with a 1 KB argument.

Figures (higher is better), for each of our codec backends (katcp-codec Rust
and pure Python):

* line API: ``katcp.MessageParser().parse(line)`` one line at a time, vs
  aiokatcp 2.3 ``Message.parse(line)``;
* streaming: ``LineCodec.feed(chunk)`` over 64 KiB chunks, vs aiokatcp's own
  receive path (``katcp_codec.Parser.append`` + conversion to
  ``aiokatcp.Message``, copied from ``aiokatcp.connection``);
* streaming, katcp-codec path only: ``RustLineCodec.feed`` (it returns the
  ``katcp.Message`` objects the rest of the package consumes) against katcp-codec's
  parsers alone on the same chunks, each ratio being *our lines/s divided by theirs*
  (1.0 = as fast as the bare parser):

  - ``katcp_codec.Parser.append``: the public parser, which itself converts every
    message of the extension into a ``katcp_codec.Message`` dataclass;
  - ``katcp_codec._lib.Parser.append``: the extension's parser under it, which
    returns its own message objects (their ``name``, ``arguments`` and ``mid`` are
    already Python objects) and converts nothing -- issue 17's goal is ≥ 0.85x of
    this one;
  - three floors built on ``_lib.Parser``, showing what any conversion to Python
    objects costs at least: reading the four fields of each message (no object
    built), one bare object per message (no field read), and both (one
    ``katcp.Message`` via ``object.__new__`` with the four raw fields stored).
    ``RustLineCodec.feed`` cannot beat the third, and no eager conversion can beat
    the first two;
* formatting: ``codec.encode(msg)`` (wire form with newline) and
  ``bytes(msg)``, vs aiokatcp ``bytes(msg)`` (which includes the newline).

A pure-Python baseline is also timed: a re-implementation of katcp-python
0.9.3's regex-per-argument parser and formatter (katcp-python itself is not
installed here), so the pure path can be compared with the classic approach
as well as with aiokatcp (which uses katcp-codec).

The summary at the end gives the issue 17 goals as medians of the per-run ratios
(each run times both sides back to back on this process's CPU time).

Usage: ``python bench/bench_codec.py [--quick] [--repeat N]``
"""

import argparse
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiokatcp  # noqa: E402
import katcp_codec  # noqa: E402

from katcp import codec  # noqa: E402
from katcp._protocol import grammar  # noqa: E402
from katcp.core import MessageParser  # noqa: E402

KB_ARG = bytes(c for c in range(33, 127) if c != 0x5C) * 11  # 1023 bytes, no escapes

MIX = [
    b"?sensor-value[101] rx.temperature",
    b"!sensor-value[101] ok 1",
    b"#sensor-value[101] 1700000000.123456 1 rx.temperature nominal 23.5",
    b"#sensor-status 1700000000.123456 1 rx.temperature nominal 23.5",
    b"#sensor-status 1700000000.223456 1 rx.pressure warn 1013.25",
    b"#sensor-status 1700000000.323456 1 ant.azimuth nominal -12.75",
    b"#sensor-status 1700000000.423456 1 ant.elevation nominal 45.0",
    b"#sensor-status 1700000000.523456 1 device.status nominal ok",
    b"?watchdog[102]",
    b"!watchdog[102] ok",
    b"?sensor-sampling[103] rx.temperature event-rate 0.1 10",
    b"!sensor-sampling[103] ok rx.temperature event-rate 0.1 10",
    b"#log info 1700000000.100000 root Device\\_started\\_on\\_port\\_7147",
    b"#help[104] sensor-sampling Configure\\_or\\_query\\_the\\_way\\_a\\_sensor\\_is\\_sampled.",
    b"!help[104] ok 42",
    b"#version-connect katcp-protocol 5.1-MIB",
    b"!fail-req[105] fail Traceback:\\n\\_\\_File\\_\"x.py\",\\_line\\_1\\n\\tValueError\\_\\@",
    b"#sensor-list[106] rx.temperature Receiver\\_temperature degC float -50.0 150.0",
    b"#blob " + KB_ARG,
]


# ---------------------------------------------------------------------------
# katcp-python 0.9.3 style pure-Python baseline (re-implemented for reference)
# ---------------------------------------------------------------------------


class _KP:
    TYPE_SYMBOL_LOOKUP = {b"?": 0, b"!": 1, b"#": 2}
    TYPE_SYMBOLS = {0: b"?", 1: b"!", 2: b"#"}
    ESCAPE_LOOKUP = {b"\\": b"\\", b"_": b" ", b"0": b"\0", b"n": b"\n",
                     b"r": b"\r", b"e": b"\x1b", b"t": b"\t", b"@": b""}
    REVERSE = {v: k for k, v in ESCAPE_LOOKUP.items() if v}
    SPECIAL_RE = re.compile(b"[\0\n\r\x1b\t ]")
    UNESCAPE_RE = re.compile(b"\\\\(.?)")
    ESCAPE_RE = re.compile(b"[\\\\ \0\n\r\x1b\t]")
    WHITESPACE_RE = re.compile(b"[ \t]+")
    NAME_RE = re.compile(b"^(?P<name>[a-zA-Z][a-zA-Z0-9\\-]*)(\\[(?P<id>[0-9]+)\\])?$")

    def _unescape_match(self, m):
        return self.ESCAPE_LOOKUP[m.group(1)]

    def _parse_arg(self, arg):
        if self.SPECIAL_RE.search(arg):
            raise ValueError("special")
        return self.UNESCAPE_RE.sub(self._unescape_match, arg)

    def parse(self, line):
        if not line:
            raise ValueError("empty")
        mtype = self.TYPE_SYMBOL_LOOKUP[line[:1]]
        parts = self.WHITESPACE_RE.split(line)
        if not parts[-1]:
            del parts[-1]
        name = parts[0][1:]
        arguments = [self._parse_arg(x) for x in parts[1:]]
        match = self.NAME_RE.match(name)
        if not match:
            raise ValueError("name")
        # katcp-python then builds Message(mtype, name, arguments, mid), which
        # re-formats every argument and validates the name.
        args = [a if isinstance(a, bytes) else str(a).encode() for a in arguments]
        name = match.group("name").decode("ascii")
        if not name.replace("-", "").isalnum():
            raise ValueError("name")
        return (mtype, name, args, match.group("id"))

    def _escape_match(self, m):
        return b"\\" + self.REVERSE[m.group()]

    def format(self, msg):
        mtype, name, args, mid = msg
        if args:
            escaped = [self.ESCAPE_RE.sub(self._escape_match, x) or b"\\@" for x in args]
            arg_str = b" " + b" ".join(escaped)
        else:
            arg_str = b""
        mid_str = b"[" + mid + b"]" if mid is not None else b""
        return self.TYPE_SYMBOLS[mtype] + name.encode() + mid_str + arg_str


# ---------------------------------------------------------------------------
# timing helpers
# ---------------------------------------------------------------------------


def time_once(fn, min_time):
    """CPU seconds per call of ``fn``, running it for at least ``min_time``.

    This process's CPU time, not the wall clock: on a shared machine, time spent
    descheduled would otherwise land on whichever candidate was running.
    """
    loops = 0
    t0 = time.process_time()
    while True:
        fn()
        loops += 1
        elapsed = time.process_time() - t0
        if elapsed >= min_time:
            return elapsed / loops


def measure(candidates, repeat, min_time, runs=None):
    """Median items/s of each ``(key, fn, n_items)``, measured round-robin.

    Interleaving the candidates spreads the noise of a shared machine over
    all of them instead of biasing whichever ran during a busy spell.  If
    ``runs`` is a dict, every rate of every key is stored in it as well.
    """
    rates = {key: [] for key, _, _ in candidates}
    for _ in range(repeat):
        for key, fn, n_items in candidates:
            rates[key].append(n_items / time_once(fn, min_time))
    if runs is not None:
        runs.update(rates)
    return {key: statistics.median(values) for key, values in rates.items()}


RAW_KEY = "katcp_codec._lib.Parser.append"


def run_ratio(runs, num, den):
    """Median, min and max over the runs of ``rate[num] / rate[den]`` (paired by run)."""
    ratios = [a / b for a, b in zip(runs[num], runs[den])]
    return statistics.median(ratios), min(ratios), max(ratios)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    ap.add_argument("--repeat", type=int, default=None,
                    help="interleaved runs per section (default 7, 5 with --quick)")
    opts = ap.parse_args()
    repeat, min_time = (5, 0.05) if opts.quick else (7, 0.15)
    if opts.repeat is not None:
        repeat = max(1, opts.repeat)

    lines = MIX * 10
    wire_lines = [line + b"\n" for line in lines]
    n = len(lines)
    kp = _KP()
    backends = [("python", grammar._py_parse_checked, codec.PyLineCodec)]
    if codec.HAVE_RUST_CODEC:
        backends.insert(0, ("katcp-codec", codec.rust_parse_line, codec.RustLineCodec))

    # --- line API ---------------------------------------------------------
    aio_parse = aiokatcp.Message.parse

    def aio_line():
        for w in wire_lines:
            aio_parse(w)

    def kp_line():
        p = kp.parse
        for line in lines:
            p(line)

    line_cands = [("aiokatcp", aio_line, n), ("katcp-python-style", kp_line, n)]
    for label, parse_fn, _ in backends:
        parser = MessageParser()
        parser._parse_line = parse_fn
        parse = parser.parse
        for line in lines:  # sanity: same results as aiokatcp
            ours, theirs = parse(line), aio_parse(line + b"\n")
            assert ours.arguments == theirs.arguments and ours.name == theirs.name

        def ours_line(parse=parse):
            for line in lines:
                parse(line)

        line_cands.append((label, ours_line, n))

    # --- streaming --------------------------------------------------------
    stream = b"".join(wire_lines)
    while len(stream) < 1 << 20:
        stream += stream
    chunk_size = 65536
    chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    n_stream = stream.count(b"\n")
    AioMessage = aiokatcp.Message

    def aio_stream():
        parser = katcp_codec.Parser(1 << 20)
        count = 0
        for chunk in chunks:
            for raw_msg in parser.append(chunk):
                if isinstance(raw_msg, ValueError):
                    continue
                msg = AioMessage(raw_msg.mtype, raw_msg.name.decode("ascii"), mid=raw_msg.mid)
                msg.arguments = raw_msg.arguments
                count += 1
        assert count == n_stream

    stream_cands = [("aiokatcp", aio_stream, n_stream)]
    # katcp-codec's own parsers alone, without any conversion: the public Parser (it returns
    # katcp_codec.Message dataclasses) and the extension's Parser under it (Rust-side
    # messages only); plus the least that building katcp Messages from the latter costs:
    # the four attribute reads alone, one bare object per message alone, and both.
    codec_parsers = []
    if codec.HAVE_RUST_CODEC:
        from katcp._protocol.message import Message

        RawParser = katcp_codec._lib.Parser
        onew = object.__new__

        def public_parser():
            p = katcp_codec.Parser(1 << 20)
            for chunk in chunks:
                p.append(chunk)

        def raw_parser():
            p = RawParser(1 << 20)
            for chunk in chunks:
                p.append(chunk)

        def reads_floor():
            p = RawParser(1 << 20)
            for chunk in chunks:
                for m in p.append(chunk):
                    _ = m.mtype
                    _ = m.name
                    _ = m.arguments
                    _ = m.mid

        def objects_floor():
            p = RawParser(1 << 20)
            for chunk in chunks:
                _ = [onew(Message) for m in p.append(chunk)]

        def conversion_floor():
            p = RawParser(1 << 20)
            for chunk in chunks:
                out = []
                for m in p.append(chunk):
                    msg = onew(Message)
                    msg.mtype = m.mtype
                    msg.name = m.name
                    msg.arguments = m.arguments
                    msg.mid = m.mid
                    out.append(msg)

        codec_parsers = [("katcp_codec.Parser.append", public_parser, n_stream),
                         ("katcp_codec._lib.Parser.append", raw_parser, n_stream),
                         ("floor: _lib.Parser + 4 field reads", reads_floor, n_stream),
                         ("floor: _lib.Parser + 1 bare object/line", objects_floor, n_stream),
                         ("floor: _lib.Parser + bare Message objects", conversion_floor,
                          n_stream)]
        stream_cands += codec_parsers
    for label, _, codec_cls in backends:

        def ours_stream(codec_cls=codec_cls):
            c = codec_cls(1 << 20)
            count = 0
            for chunk in chunks:
                count += len(c.feed(chunk))
            assert count == n_stream

        stream_cands.append((label, ours_stream, n_stream))

    # --- formatting -------------------------------------------------------
    our_msgs = [MessageParser().parse(line) for line in lines]
    aio_msgs = [aiokatcp.Message.parse(w) for w in wire_lines]
    kp_msgs = [kp.parse(line) for line in lines]
    for ours, w in zip(our_msgs, wire_lines):
        assert bytes(ours) + b"\n" == bytes(aiokatcp.Message.parse(w))

    def aio_fmt():
        for m in aio_msgs:
            bytes(m)

    def kp_fmt():
        f = kp.format
        for m in kp_msgs:
            f(m)

    def ours_bytes():
        for m in our_msgs:
            bytes(m)

    fmt_cands = [
        ("aiokatcp", aio_fmt, n),
        ("katcp-python-style", kp_fmt, n),
        (f"bytes(msg) [{codec.CODEC_BACKEND}]", ours_bytes, n),
    ]
    for label, _, codec_cls in backends:
        enc = codec_cls().encode

        def ours_encode(enc=enc):
            for m in our_msgs:
                enc(m)

        fmt_cands.append((f"LineCodec.encode [{label}]", ours_encode, n))

    # --- report -----------------------------------------------------------
    print(f"KATCP codec benchmark: {n} lines per pass ({len(MIX)} kinds incl. a 1 KB argument);")
    print(f"streaming: {len(stream)} bytes in {len(chunks)} chunks of {chunk_size} bytes")
    print(f"python {sys.version.split()[0]}, aiokatcp {aiokatcp.__version__}, "
          f"active backend: {codec.CODEC_BACKEND}; medians of {repeat} interleaved runs")
    fmt = "{:<44} {:>12,.0f} /s   {:>5.2f}x aiokatcp   {:>5.2f}x katcp-python-style"
    sections = [
        ("line API: one line at a time", line_cands, "aiokatcp Message.parse",
         "katcp-python-style pure parse", "ours MessageParser.parse"),
        ("streaming: 64 KiB chunks", stream_cands, "aiokatcp receive path", None,
         "ours LineCodec.feed"),
        ("formatting", fmt_cands, "aiokatcp bytes(msg)", "katcp-python-style format", "ours"),
    ]
    kp_base = None
    stream_runs = {}
    for title, cands, aio_label, kp_label, ours_label in sections:
        rates = measure(cands, repeat, min_time, stream_runs if cands is stream_cands else None)
        aio = rates.pop("aiokatcp")
        kp_rate = rates.pop("katcp-python-style", None)
        parsers = {key: rates.pop(key) for key, _, _ in codec_parsers if key in rates}
        if kp_rate is not None:
            kp_base = kp_rate
        print()
        print(f"-- {title}")
        print(f"{aio_label:<44} {aio:>12,.0f} /s")
        if kp_rate is not None:
            print(f"{kp_label:<44} {kp_rate:>12,.0f} /s")
        for label, r in rates.items():
            print(fmt.format(f"{ours_label} [{label}]" if "[" not in label else f"{ours_label} {label}",
                             r, r / aio, r / kp_base))
        if parsers:
            print(f"  katcp-codec's parsers alone, and floors (ratios: medians of the {repeat} "
                  "per-run ratios, range):")
            print(f"  {'':<42} {'lines/s':>12}      ours [katcp-codec] / it   it / _lib.Parser")
            for key, rate in parsers.items():
                med, lo, hi = run_ratio(stream_runs, "katcp-codec", key)
                own = run_ratio(stream_runs, key, RAW_KEY)[0]
                print(f"  {key:<42} {rate:>12,.0f} /s   {med:5.2f}x ({lo:.2f}..{hi:.2f})"
                      f"       {own:5.2f}x")

    print()
    print(f"-- issue 17 goals, streaming (medians of {repeat} per-run ratios, lines/s over lines/s)")
    if codec_parsers:
        for num, den, goal in [
            ("katcp-codec", RAW_KEY, ">= 0.85"),
            ("katcp-codec", "katcp_codec.Parser.append", None),
            ("floor: _lib.Parser + 4 field reads", RAW_KEY, None),
            ("floor: _lib.Parser + 1 bare object/line", RAW_KEY, None),
            ("floor: _lib.Parser + bare Message objects", RAW_KEY, None),
        ]:
            med, lo, hi = run_ratio(stream_runs, num, den)
            label = f"ours [{num}]" if num == "katcp-codec" else num
            print(f"{label + ' / ' + den:<84} {med:5.2f}x ({lo:.2f}..{hi:.2f})"
                  + (f"  goal {goal}" if goal else ""))
    med, lo, hi = run_ratio(stream_runs, "python", "aiokatcp")
    print(f"{'ours [python] / aiokatcp receive path (katcp-codec + aiokatcp.Message)':<84} "
          f"{med:5.2f}x ({lo:.2f}..{hi:.2f})  goal >= 1.5")


if __name__ == "__main__":
    main()
