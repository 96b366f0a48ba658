"""Every KATCP conformance vector, on both codec backends, line and streaming APIs."""

import json

import pytest
from reference_data import reference_path

from katcp import codec
from katcp._protocol import grammar
from katcp._protocol.message import _new_message
from katcp.core import KatcpSyntaxError, Message, MessageParser


def _load():
    with open(reference_path("katcp-vectors.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


VECTORS = _load()
MTYPES = {"request": Message.REQUEST, "reply": Message.REPLY, "inform": Message.INFORM}

LINE_PARSERS = [pytest.param(grammar._py_parse_checked, id="python")]
CODECS = [pytest.param(codec.PyLineCodec, id="python")]
if codec.HAVE_RUST_CODEC:
    LINE_PARSERS.append(pytest.param(codec.rust_parse_line, id="rust"))
    CODECS.append(pytest.param(codec.RustLineCodec, id="rust"))


def _line(v):
    return v["line"].encode("latin-1")


def _check_ok(v, msg):
    assert isinstance(msg, Message), v["id"]
    assert msg.mtype == MTYPES[v["mtype"]]
    assert msg.name == v["name"]
    assert type(msg.name) is str
    if v["mid"] is None:
        assert msg.mid is None
    else:
        assert msg.mid == str(v["mid"]).encode()
    assert msg.arguments == [bytes.fromhex(a) for a in v["args"]]
    assert all(type(a) is bytes for a in msg.arguments)
    assert bytes(msg) == v["canonical"].encode("latin-1")


def test_vector_file_loaded():
    assert len(VECTORS) >= 100
    assert {v["expect"] for v in VECTORS} == {"ok", "syntax-error", "ignore"}


@pytest.mark.parametrize("parse", LINE_PARSERS)
@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["id"])
def test_line_api(v, parse):
    line = _line(v)
    if v["expect"] == "ok":
        msg = parse(line, _new_message)
        _check_ok(v, msg)
        # The canonical form parses back to the same message.
        assert parse(v["canonical"].encode("latin-1"), _new_message) == msg
    else:
        # Blank lines are not a message: the line API raises (katcp-python
        # behaviour), the streaming API stays silent (tested below).
        with pytest.raises(KatcpSyntaxError) as info:
            parse(line, _new_message)
        assert str(info.value)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["id"])
def test_message_parser(v):
    line = _line(v)
    parser = MessageParser()
    if v["expect"] == "ok":
        _check_ok(v, parser.parse(line))
    else:
        with pytest.raises(KatcpSyntaxError):
            parser.parse(line)


@pytest.mark.parametrize("terminator", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
@pytest.mark.parametrize("codec_cls", CODECS)
@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["id"])
def test_streaming(v, codec_cls, terminator):
    c = codec_cls()
    out = c.feed(_line(v) + terminator)
    assert c.buffer_size == 0
    if v["expect"] == "ok":
        assert len(out) == 1
        _check_ok(v, out[0])
        assert c.encode(out[0]) == v["canonical"].encode("latin-1") + b"\n"
    elif v["expect"] == "syntax-error":
        assert len(out) == 1
        assert isinstance(out[0], KatcpSyntaxError)
        assert str(out[0])
    else:
        assert out == []


@pytest.mark.parametrize("codec_cls", CODECS)
def test_streaming_all_vectors_bytewise(codec_cls):
    """All vectors in one stream fed one byte at a time, then in one chunk."""
    stream = b"".join(_line(v) + b"\n" for v in VECTORS)
    expected = [v for v in VECTORS if v["expect"] != "ignore"]
    for chunks in ([stream[i : i + 1] for i in range(len(stream))], [stream]):
        c = codec_cls()
        out = []
        for chunk in chunks:
            out.extend(c.feed(chunk))
        assert len(out) == len(expected)
        for v, item in zip(expected, out):
            if v["expect"] == "ok":
                _check_ok(v, item)
            else:
                assert isinstance(item, KatcpSyntaxError), v["id"]
