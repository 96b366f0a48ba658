"""Property and differential tests for the KATCP line codec (pure Python vs katcp-codec)."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from katcp import codec
from katcp._protocol import grammar
from katcp._protocol.message import _new_message
from katcp.core import KatcpSyntaxError, Message

HAVE_RUST = codec.HAVE_RUST_CODEC
needs_rust = pytest.mark.skipif(not HAVE_RUST, reason="katcp-codec not importable")

# KATCP_HYPOTHESIS_EXAMPLES=5000 gives a deeper (slow) run.
SETTINGS = settings(
    max_examples=int(os.environ.get("KATCP_HYPOTHESIS_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

CODEC_CLASSES = [pytest.param(codec.PyLineCodec, id="python")]
LINE_PARSERS = [pytest.param(grammar._py_parse_checked, id="python")]
FORMATTERS = [pytest.param(codec.py_format_message, id="python")]
if HAVE_RUST:
    CODEC_CLASSES.append(pytest.param(codec.RustLineCodec, id="rust"))
    LINE_PARSERS.append(pytest.param(codec.rust_parse_line, id="rust"))
    FORMATTERS.append(pytest.param(codec.rust_format_message, id="rust"))

# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------

names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9\-]{0,12}\Z", fullmatch=True)
mids = st.one_of(st.none(), st.integers(1, 2**31 - 1).map(lambda i: b"%d" % i))
arguments = st.lists(st.binary(max_size=20), max_size=6)


@st.composite
def messages(draw):
    return _new_message(draw(st.integers(0, 2)), draw(names), draw(arguments), draw(mids))


# Bytes that matter to the grammar, so random lines are often nearly valid.
INTERESTING = (
    b"?!#[]0123456789aZz-_\\ \t@entr"
    + b"\0\x1b\x0b\x0c\x7f\x80\xff.,"
)
junk_bytes = st.lists(st.sampled_from([bytes([c]) for c in INTERESTING]), max_size=30).map(
    b"".join
)
# Escape-heavy argument text: valid and invalid escapes, runs of backslashes.
escape_soup = st.lists(
    st.sampled_from(
        [b"\\", b"\\\\", b"\\_", b"\\@", b"\\n", b"\\e", b"\\0", b"\\q", b"a", b"_", b" ", b"\t",
         b"\x0b", b"\x0c", b"\0", b"\x1b", b"\xff"]
    ),
    max_size=12,
).map(b"".join)
valid_heads = st.builds(
    lambda t, n, mid: t + n.encode() + (b"[%d]" % mid if mid else b""),
    st.sampled_from([b"?", b"!", b"#"]),
    names,
    st.one_of(st.none(), st.integers(1, 2**31 - 1)),
)
lines_no_terminator = st.one_of(
    junk_bytes.filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.builds(lambda h, sep, a: h + sep + a, valid_heads, st.sampled_from([b" ", b"\t", b"  "]),
              escape_soup),
    messages().map(bytes),
    st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b),
)
terminators = st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n"])


@st.composite
def streams(draw):
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        parts.append(draw(lines_no_terminator))
        parts.append(draw(terminators))
    if draw(st.booleans()):
        parts.append(draw(lines_no_terminator))  # unterminated tail
    return b"".join(parts)


def chunked(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


def feed_all(c, chunks):
    out = []
    sizes = []
    for chunk in chunks:
        out.extend(c.feed(chunk))
        sizes.append(c.buffer_size)
    return out, sizes


def summary(items, with_text=False):
    """Messages as tuples, errors as a marker (or their text)."""
    return [
        (("ERROR: " + str(i)) if with_text else "ERROR")
        if isinstance(i, KatcpSyntaxError)
        else (i.mtype, i.name, i.mid, i.arguments)
        for i in items
    ]


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATTERS)
@pytest.mark.parametrize("parse", LINE_PARSERS)
@SETTINGS
@given(msg=messages())
def test_format_parse_roundtrip(msg, parse, fmt):
    wire = fmt(msg.mtype, msg.name, msg.mid, msg.arguments)
    assert b"\n" not in wire and b"\r" not in wire
    assert parse(wire, _new_message) == msg


@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
@SETTINGS
@given(msgs=st.lists(messages(), max_size=5), cuts=st.lists(st.integers(0, 10**6), max_size=6))
def test_stream_roundtrip(codec_cls, msgs, cuts):
    c = codec_cls()
    data = b"".join(c.encode(m) for m in msgs)
    out, _ = feed_all(c, chunked(data, cuts))
    assert out == msgs
    assert c.buffer_size == 0


@SETTINGS
@given(msg=messages())
def test_bytes_is_canonical(msg):
    wire = bytes(msg)
    assert wire == codec.py_format_message(msg.mtype, msg.name, msg.mid, msg.arguments)
    if HAVE_RUST:
        assert wire == codec.rust_format_message(msg.mtype, msg.name, msg.mid, msg.arguments)
    # No trailing whitespace, single spaces between arguments.
    assert not wire.endswith((b" ", b"\t"))
    assert wire.count(b" ") == len(msg.arguments)


# ---------------------------------------------------------------------------
# robustness: arbitrary input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("parse", LINE_PARSERS)
@SETTINGS
@given(line=st.one_of(st.binary(max_size=40), junk_bytes))
def test_line_parser_only_raises_syntax_error(parse, line):
    try:
        msg = parse(line, _new_message)
    except KatcpSyntaxError as exc:
        assert str(exc)
    else:
        assert isinstance(msg, Message)
        assert all(type(a) is bytes for a in msg.arguments)


@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
@SETTINGS
@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 10**6), max_size=5))
def test_stream_never_raises(codec_cls, data, cuts):
    c = codec_cls(max_line_length=64)
    out, _ = feed_all(c, chunked(data, cuts))
    for item in out:
        assert isinstance(item, (Message, KatcpSyntaxError))


# ---------------------------------------------------------------------------
# differential: pure Python vs katcp-codec
# ---------------------------------------------------------------------------


@needs_rust
@SETTINGS
@given(line=st.one_of(lines_no_terminator, junk_bytes, st.binary(max_size=40)))
def test_differential_line_api(line):
    results = []
    for parse in (grammar._py_parse_checked, codec.rust_parse_line):
        try:
            results.append(parse(line, _new_message))
        except KatcpSyntaxError as exc:
            results.append(exc)
    assert summary(results[:1], with_text=True) == summary(results[1:], with_text=True)


@needs_rust
@SETTINGS
@given(
    data=streams(),
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    limit=st.sampled_from([2**20, 40, 16, 8]),
)
def test_differential_streaming(data, cuts, limit):
    chunks = chunked(data, cuts)
    py_out, py_sizes = feed_all(codec.PyLineCodec(limit), chunks)
    rs_out, rs_sizes = feed_all(codec.RustLineCodec(limit), chunks)
    # Same messages, and the same error descriptions.
    assert summary(py_out, with_text=True) == summary(rs_out, with_text=True)
    assert py_sizes == rs_sizes


@needs_rust
@SETTINGS
@given(
    lines=st.lists(st.tuples(lines_no_terminator, terminators), max_size=8),
    partial=st.lists(st.booleans(), max_size=8),
    limit=st.sampled_from([2**20, 40, 16, 8]),
)
def test_differential_one_line_per_read(lines, partial, limit):
    """Reads of one whole line each (RustLineCodec's short path), some after a partial
    line or with the line in two reads: the same results as the pure parser."""
    chunks = []
    for (line, end), split in zip(lines, partial + [False] * len(lines)):
        if split and line:
            chunks += [line[:1], line[1:] + end]
        else:
            chunks.append(line + end)
    py_out, py_sizes = feed_all(codec.PyLineCodec(limit), chunks)
    rs_out, rs_sizes = feed_all(codec.RustLineCodec(limit), chunks)
    assert summary(py_out, with_text=True) == summary(rs_out, with_text=True)
    assert py_sizes == rs_sizes


@needs_rust
@SETTINGS
@given(msg=messages())
def test_differential_encode(msg):
    assert codec.PyLineCodec().encode(msg) == codec.RustLineCodec().encode(msg)


# ---------------------------------------------------------------------------
# specific behaviour
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
def test_line_length_limit(codec_cls):
    c = codec_cls(max_line_length=10)
    # 9 bytes + terminator = 10: accepted.
    assert summary(c.feed(b"?abcdefgh\n")) == [(0, "abcdefgh", None, [])]
    # 10 bytes + terminator: too long, reported once the terminator arrives.
    out = c.feed(b"?abcdefghi\n!ok ok\n")
    assert isinstance(out[0], KatcpSyntaxError) and "too long" in str(out[0]).lower()
    assert summary(out[1:]) == [(1, "ok", None, [b"ok"])]
    # A partial line is capped and discarded; parsing resumes after its end.
    assert c.feed(b"#" + b"x" * 100) == []
    assert c.buffer_size == 10
    out = c.feed(b"yyy\n#a\n")
    assert isinstance(out[0], KatcpSyntaxError)
    assert summary(out[1:]) == [(2, "a", None, [])]
    assert c.buffer_size == 0


@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
def test_buffer_size_and_partial_lines(codec_cls):
    c = codec_cls()
    assert c.feed(b"?wat") == []
    assert c.buffer_size == 4
    assert c.feed(bytearray(b"chdog[7]")) == []
    assert c.buffer_size == 12
    out = c.feed(memoryview(b" x\r\n#a"))
    assert summary(out) == [(0, "watchdog", b"7", [b"x"])]
    assert c.buffer_size == 2


@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
def test_blank_lines_are_silent(codec_cls):
    c = codec_cls()
    assert c.feed(b"\n\r\n \t \n\t\r") == []


@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
def test_reset(codec_cls):
    c = codec_cls()
    c.feed(b"?partial")
    c.reset()
    assert c.buffer_size == 0
    assert summary(c.feed(b"?x\n")) == [(0, "x", None, [])]


@pytest.mark.parametrize(
    "line, fragment",
    [
        (b"", "Empty"),
        (b" \t", "Empty"),
        (b"x", "type character"),
        (b" ?foo", "Whitespace"),
        (b"?", "Missing message name"),
        (b"?1abc", "start with an ASCII letter"),
        (b"?foo_bar", "Invalid character"),
        (b"?foo[1", "Unterminated"),
        (b"?foo[a]", "decimal digits"),
        (b"?foo[0]", "leading zeros"),
        (b"?foo[2147483648]", "larger than"),
        (b"?foo[1]x", "Invalid character"),
        (b"?foo a\\q", "Invalid escape"),
        (b"?foo a\\", "lone backslash"),
        (b"?foo a\0b", "NUL"),
        (b"?foo a\x1bb", "ESC"),
        (b"?foo a\nb", "embedded line terminator"),
    ],
)
@pytest.mark.parametrize("parse", LINE_PARSERS)
def test_error_messages_say_what_is_wrong(parse, line, fragment):
    with pytest.raises(KatcpSyntaxError) as info:
        parse(line, _new_message)
    assert fragment in str(info.value)


@pytest.mark.parametrize("parse", LINE_PARSERS)
def test_line_api_tolerates_one_trailing_terminator(parse):
    for term in (b"\n", b"\r", b"\r\n"):
        assert parse(b"?foo a" + term, _new_message).arguments == [b"a"]


@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
def test_streaming_vertical_tab_and_form_feed_are_argument_bytes(codec_cls):
    out = codec_cls().feed(b"#foo a\x0bb \x0c\n")
    assert summary(out) == [(2, "foo", None, [b"a\x0bb", b"\x0c"])]


def test_escape_helpers():
    assert codec.escape_argument(b"") == b"\\@"
    assert codec.escape_argument(b"a b\\\0\n\r\x1b\t") == b"a\\_b\\\\\\0\\n\\r\\e\\t"
    assert codec.unescape_argument(b"a\\_b\\\\\\0\\n\\r\\e\\t\\@") == b"a b\\\0\n\r\x1b\t"
    with pytest.raises(KatcpSyntaxError):
        codec.unescape_argument(b"\\x")


def test_active_backend():
    assert codec.CODEC_BACKEND in ("python", "rust")
    assert (codec.LineCodec is codec.RustLineCodec) == (codec.CODEC_BACKEND == "rust")
    assert codec.LineCodec().backend == codec.CODEC_BACKEND


@pytest.mark.parametrize(
    "line, fragment",
    [
        (b"x", "type character"),
        (b"?foo[0]", "leading zeros"),
        (b"?foo[2147483648]", "larger than"),
        (b"?foo a\\q", "Invalid escape"),
        (b"?foo a\\", "lone backslash"),
        (b"?foo a\0b", "NUL"),
        (b"?foo_bar", "Invalid character"),
    ],
)
@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
def test_streaming_errors_say_what_is_wrong(codec_cls, line, fragment):
    c = codec_cls()
    # Split the bad line across feeds, between good lines.
    out = c.feed(b"?ok\n" + line[:3]) + c.feed(line[3:] + b"\n!ok ok\n")
    assert len(out) == 3
    assert fragment in str(out[1])
    assert summary([out[0], out[2]]) == [(0, "ok", None, []), (1, "ok", None, [b"ok"])]


# Heads that look like a known head followed by an id, but are not valid: the pure codec
# remembers heads it has seen (``_HEAD_CACHE``) and checks ids without the regex, so each must
# still be refused exactly as the line API refuses it.
NEAR_MISS_IDS = [
    b"?cached-head[0]",
    b"?cached-head[01]",
    b"?cached-head[]",
    b"?cached-head[1a]",
    b"?cached-head[-1]",
    b"?cached-head[+1]",
    b"?cached-head[ 1]",
    b"?cached-head[1][2]",
    b"?cached-head[[1]",
    b"?cached-head[2147483648]",
    b"?cached-head[9999999999]",
    b"?cached-head[12345678901]",
    b"?cached-head[\xd9\xa1]",  # ARABIC-INDIC DIGIT ONE in UTF-8
    b"?cached-head]",
    b"?cached-head1]",
    b" ?cached-head",
    b"\t?cached-head[5]",
    b"#cached-head[0]",
]
NEAR_MISS_VALID = [
    b"?cached-head[1]",
    b"?cached-head[10]",
    b"?cached-head[2147483647]",
    b"?cached-head[1000000000] a b",
    b"?cached-head a",
    b"!cached-head ok",
    b"#cached-head[7]",
    b"?cached-headx",
    b"?cached-hea",
    b"?cached-head a\\_b \\@ c\\\\d\\\\\\_",  # escapes on a known head
    b"!cached-head[8] ok Some\\_text\\n\\t\\e\\0\\r",
]
# Known heads with a bad escape: refused, with the same words as the line API.
BAD_ESCAPES = [
    b"?cached-head a\\q",
    b"?cached-head a\\",
    b"!cached-head[9] ok a\\ b",
    b"?cached-head a\\\\\\",
]


@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
def test_streaming_known_heads_with_odd_ids(codec_cls):
    lines = [b"?cached-head", b"!cached-head[3] ok", b"#cached-head"]  # warm the caches
    lines += NEAR_MISS_IDS + NEAR_MISS_VALID + BAD_ESCAPES
    expected = []
    for line in lines:
        try:
            expected.append(grammar._py_parse_checked(line, _new_message))
        except KatcpSyntaxError as exc:
            expected.append(exc)
    n_bad = len(NEAR_MISS_IDS) + len(BAD_ESCAPES)
    assert sum(isinstance(e, KatcpSyntaxError) for e in expected) == n_bad
    assert [b"a b", b"", b"c\\d\\ "] in [e.arguments for e in expected if isinstance(e, Message)]
    c = codec_cls()
    # Twice: the second pass meets every head after the first has been remembered.
    for _ in range(2):
        out = c.feed(b"\n".join(lines) + b"\n")
        assert summary(out, with_text=True) == summary(expected, with_text=True)


@pytest.mark.parametrize("codec_cls", CODEC_CLASSES)
def test_streaming_ids_of_consecutive_messages(codec_cls):
    # Consecutive messages often share an id (informs, then the reply); each keeps its own.
    data = b"?a[5]\n#a[5] x\n!a[5] ok\n#b[6]\n#c\n!d[5] ok\n#e[2147483647]\n#f[6]\n"
    c = codec_cls()
    out = c.feed(data[:9]) + c.feed(data[9:])  # split inside "#a[5]"
    assert [(m.name, m.mid) for m in out] == [
        ("a", b"5"), ("a", b"5"), ("a", b"5"), ("b", b"6"), ("c", None), ("d", b"5"),
        ("e", b"2147483647"), ("f", b"6"),
    ]
    assert all(type(m.mid) is bytes for m in out if m.mid is not None)
    out[0].mid = b"9"  # mutable messages: changing one changes no other
    assert out[1].mid == b"5"
