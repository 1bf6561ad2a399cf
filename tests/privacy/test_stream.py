"""The chunked file format: round trips, and every kind of damage is detected."""

from __future__ import annotations

import io
import os

import pytest

from appliance.privacy import stream
from appliance.privacy.crypto import new_key

CHUNK = 64
RECORD = 12 + CHUNK + 16


def encrypt(data: bytes, key: bytes, chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    sealed = stream.encrypt_stream(io.BytesIO(data), out, key, stream.new_salt(), chunk)
    assert sealed.plain_bytes == len(data)
    assert sealed.stored_bytes == len(out.getvalue())
    return out.getvalue()


def decrypt(blob: bytes, key: bytes) -> bytes:
    return b"".join(stream.decrypt_stream(io.BytesIO(blob), lambda _salt: key))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 7])
def test_round_trip(size: int) -> None:
    key, data = new_key(), os.urandom(size)
    blob = encrypt(data, key)
    assert blob[:8] == stream.MAGIC
    assert decrypt(blob, key) == data
    assert len(blob) == stream.HEADER.size + max(1, -(-size // CHUNK)) * 28 + size


def test_same_plaintext_encrypts_differently() -> None:
    key = new_key()
    assert encrypt(b"x" * 200, key) != encrypt(b"x" * 200, key)


@pytest.mark.parametrize("cut_chunks", [1, 2])
def test_truncation_on_a_chunk_boundary_is_detected(cut_chunks: int) -> None:
    key = new_key()
    blob = encrypt(os.urandom(3 * CHUNK + 10), key)
    cut = blob[: stream.HEADER.size + (4 - cut_chunks) * RECORD]
    with pytest.raises(stream.StreamError, match="failed authentication"):
        decrypt(cut, key)


def test_truncation_inside_a_chunk_and_a_lost_final_chunk_are_detected() -> None:
    key = new_key()
    blob = encrypt(os.urandom(2 * CHUNK), key)  # exactly two full chunks, the 2nd is final
    with pytest.raises(stream.StreamError):
        decrypt(blob[:-5], key)
    with pytest.raises(stream.StreamError):
        decrypt(blob[: stream.HEADER.size + RECORD], key)
    with pytest.raises(stream.StreamError, match="truncated"):
        decrypt(blob[: stream.HEADER.size], key)


def test_appended_reordered_and_flipped_data_are_detected() -> None:
    key = new_key()
    data = os.urandom(3 * CHUNK)
    blob = encrypt(data, key)
    head, body = blob[: stream.HEADER.size], blob[stream.HEADER.size :]
    chunks = [body[i : i + RECORD] for i in range(0, len(body), RECORD)]
    with pytest.raises(stream.StreamError):
        decrypt(blob + chunks[0], key)
    with pytest.raises(stream.StreamError):
        decrypt(head + chunks[1] + chunks[0] + chunks[2], key)
    flipped = bytearray(blob)
    flipped[stream.HEADER.size + RECORD + 20] ^= 1
    with pytest.raises(stream.StreamError, match="chunk 1"):
        decrypt(bytes(flipped), key)
    with pytest.raises(stream.StreamError):
        decrypt(blob, new_key())


def test_a_header_from_another_file_does_not_fit() -> None:
    key = new_key()
    a, b = encrypt(os.urandom(100), key), encrypt(os.urandom(100), key)
    with pytest.raises(stream.StreamError):
        decrypt(b[: stream.HEADER.size] + a[stream.HEADER.size :], key)


def test_not_an_encrypted_file_is_a_clear_error() -> None:
    with pytest.raises(stream.StreamError, match="not an encrypted Callvault file"):
        decrypt(b"RIFF" + bytes(100), new_key())
    with pytest.raises(stream.StreamError, match="too short"):
        decrypt(b"CV", new_key())
