"""The 115 NCP vectors (produced with real ncplib 6.1.0) against katcp.ncp's codec."""

from __future__ import annotations

import json
import math
import struct
import warnings
from array import array
from datetime import datetime

import pytest
from reference_data import reference_path

from katcp.ncp import packets, values
from katcp.ncp.errors import DecodeError, DecodeWarning, NCPWarning

VECTORS_PATH = reference_path("ncp-vectors/vectors.jsonl")

with open(VECTORS_PATH) as _f:
    VECTORS = [json.loads(line) for line in _f if line.strip()]

ENCODE = [v for v in VECTORS if v["kind"] == "encode+decode"]
DECODE_OK = [v for v in VECTORS if v["kind"] == "decode-only" and v["expect"] == "ok"]
DECODE_ERR = [v for v in VECTORS if v["kind"] == "decode-only" and v["expect"] == "DecodeError"]
DECODE_WARN = [v for v in VECTORS if v["kind"] == "decode-only" and v["expect"] == "DecodeWarning"]

SCALAR_CLASS = {
    "i32": int,
    "bool": bool,
    "u32": values.u32,
    "i64": values.i64,
    "u64": values.u64,
    "f32": float,
    "f64": values.f64,
    "string": str,
}
ARRAY_WIRE_ITEMSIZE = {
    "B": 1,
    "H": 2,
    "I": 4,
    "b": 1,
    "h": 2,
    "i": 4,
    "L": 8,
    "l": 8,
    "f": 4,
    "d": 8,
}


def _num(x):
    if isinstance(x, str):
        return float(x)
    return x


def to_python(param):
    """Build the Python value a vector param describes."""
    t = param["type"]
    v = param["value"]
    if t in ("f32", "f64"):
        return SCALAR_CLASS[t](_num(v))
    if t in SCALAR_CLASS:
        return SCALAR_CLASS[t](v)
    if t == "raw":
        return bytes.fromhex(v)
    if t == "bytearray":
        return bytearray.fromhex(v)
    if t.startswith("data "):
        return array(v["typecode"], [_num(x) for x in v["items"]])
    raise AssertionError(f"unknown vector type {t}")


def describe_input(d):
    return (
        d["packet_type"],
        d["packet_id"],
        datetime.fromisoformat(d["timestamp"]),
        bytes.fromhex(d["info"]),
        [
            (f["name"], f["id"], [(p["name"], to_python(p)) for p in f["params"]])
            for f in d["fields"]
        ],
    )


def same_float(a, b):
    if math.isnan(b):
        return math.isnan(a)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def check_value(got, param):
    t = param["type"]
    expected = to_python(param)
    if t == "i32":
        assert type(got) is int
        assert got == expected
    elif t in ("f32", "f64"):
        assert type(got) is SCALAR_CLASS[t]
        assert same_float(got, expected)
    elif t in SCALAR_CLASS:
        assert type(got) is SCALAR_CLASS[t]
        assert got == expected
    elif t == "raw":
        assert type(got) is bytes
        assert got == expected
    elif t.startswith("data "):
        assert type(got) is array
        tc = param["value"]["typecode"]
        assert got.itemsize == ARRAY_WIRE_ITEMSIZE[tc]
        assert got.typecode in (tc, {"L": "Q", "l": "q"}.get(tc))
        assert len(got) == len(expected)
        if tc in "fd":
            assert all(same_float(a, b) for a, b in zip(got, expected))
        else:
            assert list(got) == list(expected)
    else:
        raise AssertionError(t)


def check_decoded(pkt, v):
    assert pkt.packet_type == v["packet_type"]
    assert pkt.packet_id == v["packet_id"]
    assert pkt.timestamp == datetime.fromisoformat(v["timestamp"])
    assert pkt.timestamp.utcoffset().total_seconds() == 0
    assert pkt.info == bytes.fromhex(v["info"])
    assert len(pkt.fields) == len(v["fields"])
    for (fname, fid, params), f in zip(pkt.fields, v["fields"]):
        assert fname == f["name"]
        assert fid == f["id"]
        assert [p[0] for p in params] == [p["name"] for p in f["params"]]
        for (_, value), p in zip(params, f["params"]):
            if p["type"] == "unknown":
                assert type(value) is bytes
            else:
                check_value(value, p)


@pytest.mark.parametrize("v", ENCODE, ids=[v["name"] for v in ENCODE])
def test_encode_vector(v):
    src = v.get("encode_input", v)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = packets.encode_packet(*describe_input(src))
    assert data.hex() == v["hex"]
    truncated = v["name"] == "long_identifiers_truncated"
    assert any(issubclass(w.category, NCPWarning) for w in caught) == truncated


@pytest.mark.parametrize("v", ENCODE, ids=[v["name"] for v in ENCODE])
def test_reencode_decoded_description(v):
    if "encode_input" in v and v["name"] in (
        "string_embedded_nul_truncates",
        "identifier_trailing_space_input",
    ):
        pytest.skip("decoding loses information for this vector (documented)")
    assert packets.encode_packet(*describe_input(v)).hex() == v["hex"]


@pytest.mark.parametrize("v", ENCODE + DECODE_OK, ids=[v["name"] for v in ENCODE + DECODE_OK])
def test_decode_vector(v):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pkt = packets.decode_packet(bytes.fromhex(v["hex"]))
    check_decoded(pkt, v)


@pytest.mark.parametrize("v", ENCODE + DECODE_OK, ids=[v["name"] for v in ENCODE + DECODE_OK])
def test_stream_decode_vector(v):
    data = bytes.fromhex(v["hex"])
    codec = packets.PacketCodec()
    out = []
    for i in range(0, len(data), 7):
        out += codec.feed(data[i : i + 7])
    out += codec.feed(data + data)
    assert len(out) == 3 and codec.buffer_size == 0
    for pkt in out:
        check_decoded(pkt, v)


@pytest.mark.parametrize("v", DECODE_ERR, ids=[v["name"] for v in DECODE_ERR])
def test_decode_error_vector(v):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DecodeWarning)
        with pytest.raises(DecodeError):
            packets.decode_packet(bytes.fromhex(v["hex"]))


@pytest.mark.parametrize("v", DECODE_ERR, ids=[v["name"] for v in DECODE_ERR])
def test_stream_decode_error_vector(v):
    codec = packets.PacketCodec()
    good = bytes.fromhex(ENCODE[0]["hex"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DecodeWarning)
        out = codec.feed(bytes.fromhex(v["hex"]) + good)
    assert isinstance(out[0], DecodeError)
    # Only packets and DecodeErrors come out, whatever the framing does afterwards.
    assert all(isinstance(x, (DecodeError, packets.Packet)) for x in out)
    if codec.failed:
        assert codec.feed(good) == [] and codec.buffer_size == 0


@pytest.mark.parametrize("v", DECODE_WARN, ids=[v["name"] for v in DECODE_WARN])
def test_decode_warning_vector(v):
    with pytest.warns(DecodeWarning) as record:
        pkt = packets.decode_packet(bytes.fromhex(v["hex"]))
    assert any(w.message.args[0] == "Unsupported type ID" for w in record)
    # The packet is fully decoded; the unknown param comes back as its raw payload bytes.
    assert pkt.packet_type == "PACK" and pkt.packet_id == 7
    ((fname, fid, params),) = pkt.fields
    assert (fname, fid) == ("FIEL", 9)
    assert [p[0] for p in params] == ["AAAA", "BBBB"]
    if v["name"] == "decode_unknown_type_first_param":
        assert params == [("AAAA", b"\x05\x00\x00\x00"), ("BBBB", "hi")]
    else:
        assert params == [("AAAA", 5), ("BBBB", b"hi\x00\x00")]


def test_vector_counts():
    assert len(VECTORS) == 115
    assert (len(ENCODE), len(DECODE_OK), len(DECODE_ERR), len(DECODE_WARN)) == (92, 11, 10, 2)


def test_embedded_footer_rejected_like_ncplib():
    """We follow 6.1.0 (no embedded-footer tolerance): a DecodeError, never a crash."""
    for v in VECTORS:
        if v["name"].startswith("decode_embedded_footer"):
            with pytest.raises(DecodeError, match="overflow"):
                packets.decode_packet(bytes.fromhex(v["hex"]))


def test_short_buffers_are_decode_errors():
    data = bytes.fromhex(ENCODE[0]["hex"])
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            packets.decode_packet(data[:n])
    with pytest.raises(DecodeError):
        packets.decode_packet(data + b"\0\0\0\0")


def test_every_truncation_and_corruption_is_decode_error_or_ok():
    """Flip each byte of a mixed packet: the decoder never raises anything but DecodeError."""
    v = next(v for v in VECTORS if v["name"] == "multi_params_mixed")
    data = bytearray.fromhex(v["hex"])
    for i in range(len(data)):
        for b in (0x00, 0xFF, 0x01, 0x7F):
            mutated = bytearray(data)
            mutated[i] = b
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DecodeWarning)
                try:
                    packets.decode_packet(bytes(mutated))
                except DecodeError:
                    pass
    assert struct.calcsize("<4sI") == 8
