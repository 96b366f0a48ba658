"""String helpers kept from katcp-python's Python 2/3 compatibility module.

This package runs on Python 3 only; these functions keep code written against
katcp-python (``from katcp.compat import ensure_native_str``) working, with
the Python 3 meaning: the native string type is :class:`str`, and byte strings
are :class:`bytes`.
"""

from __future__ import annotations

from typing import Any, List, Union

__all__ = ["byte_chars", "ensure_native_str", "is_bytes", "is_text"]


def ensure_native_str(value: Union[str, bytes]) -> str:
    """Coerce a text or byte string to the native string type (:class:`str`).

    Parameters
    ----------
    value : str or bytes
        Text is returned unchanged; bytes are decoded as UTF-8.

    Returns
    -------
    str
        The value as text.

    Raises
    ------
    TypeError
        If `value` is neither :class:`str` nor :class:`bytes`.
    UnicodeDecodeError
        If `value` is bytes that are not valid UTF-8.

    Examples
    --------
    >>> ensure_native_str(b"caf\\xc3\\xa9"), ensure_native_str("abc")
    ('café', 'abc')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"Invalid type for string conversion: {type(value)}")


def byte_chars(byte_string: bytes) -> List[bytes]:
    """Split a byte string into a list of one-byte byte strings.

    ``list(b"ab")`` gives integers on Python 3; this gives ``[b"a", b"b"]``
    (what ``list`` gave on Python 2).

    Parameters
    ----------
    byte_string : bytes or bytearray
        The byte string to split.

    Returns
    -------
    list of bytes
        One item per byte, each of the same type as `byte_string`.

    Examples
    --------
    >>> byte_chars(b"ok!")
    [b'o', b'k', b'!']
    """
    return [byte_string[i:i + 1] for i in range(len(byte_string))]


def is_bytes(value: Any) -> bool:
    """Tell whether `value` is a byte string (an instance of :class:`bytes`).

    Parameters
    ----------
    value : object
        The object to test.

    Returns
    -------
    bool
        True for :class:`bytes` (and subclasses); False otherwise, including
        for :class:`str` and :class:`bytearray`.
    """
    return isinstance(value, bytes)


def is_text(value: Any) -> bool:
    """Tell whether `value` is a text string (an instance of :class:`str`).

    Parameters
    ----------
    value : object
        The object to test.

    Returns
    -------
    bool
        True for :class:`str` (and subclasses); False otherwise, including for
        :class:`bytes`.
    """
    return isinstance(value, str)
