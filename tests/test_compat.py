"""Tests for katcp.compat (Python 3 string helpers)."""

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katcp import compat
from katcp.compat import byte_chars, ensure_native_str, is_bytes, is_text


def test_ensure_native_str():
    assert ensure_native_str("héllo") == "héllo"
    assert ensure_native_str("héllo".encode()) == "héllo"
    assert ensure_native_str(b"") == ""
    for bad in (None, 1, 1.5, bytearray(b"x"), ["a"]):
        with pytest.raises(TypeError, match="Invalid type for string conversion"):
            ensure_native_str(bad)
    with pytest.raises(UnicodeDecodeError):
        ensure_native_str(b"\xff\xfe")


@settings(max_examples=50)
@given(st.text())
def test_ensure_native_str_roundtrip(text):
    assert ensure_native_str(text.encode("utf-8")) == text
    assert ensure_native_str(text) is text


def test_byte_chars():
    assert byte_chars(b"") == []
    assert byte_chars(b"a\x00\xff") == [b"a", b"\x00", b"\xff"]
    assert byte_chars(bytearray(b"xy")) == [bytearray(b"x"), bytearray(b"y")]


@settings(max_examples=50)
@given(st.binary())
def test_byte_chars_property(data):
    chars = byte_chars(data)
    assert b"".join(chars) == data
    assert all(isinstance(c, bytes) and len(c) == 1 for c in chars)


def test_is_bytes_and_is_text():
    class MyBytes(bytes):
        pass

    class MyStr(str):
        pass

    assert is_bytes(b"x") and is_bytes(MyBytes(b"x"))
    assert not is_bytes("x") and not is_bytes(bytearray(b"x")) and not is_bytes(1)
    assert is_text("x") and is_text(MyStr("x"))
    assert not is_text(b"x") and not is_text(None)


def test_doctests():
    result = doctest.testmod(compat)
    assert result.attempted >= 2 and result.failed == 0
