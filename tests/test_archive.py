"""The tar framing against its oracle, the standard library's tarfile with flyte's member settings."""

from __future__ import annotations

import io
import os
import random
import tarfile

import pytest

from hatch_flyte.bundle.archive import _Headers, flyte_tarinfo


def tarfile_header(name: str, mode: int, size: int) -> bytes:
    st = os.stat_result((0o100000 | mode, 0, 0, 1, 0, 0, size, 0, 0, 0))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:  # flyte's writer: default (PAX) format
        tar.addfile(flyte_tarinfo(name, st), io.BytesIO(b"\0" * size) if size < 1 << 16 else None)
    data = buf.getvalue()
    # The header is everything before the member's data: one PAX block pair and one ustar block.
    return data[: 3 * tarfile.BLOCKSIZE] if name.isascii() and len(name) <= 100 else data


def test_fast_path_is_active_on_this_python() -> None:
    assert _Headers().fast


@pytest.mark.parametrize("seed", range(5))
def test_fast_headers_equal_tarfile(seed: int) -> None:
    rng = random.Random(seed)
    headers = _Headers()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_-./ "
    for _ in range(200):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 100))).strip("/") or "x"
        mode = rng.choice([0o644, 0o755, 0o600, 0o444, 0o777, 0o4755, rng.randint(0, 0o7777)])
        size = rng.choice([0, 1, 511, 512, 513, rng.randint(0, 60000)])
        assert (
            headers.header(name, mode, size)
            == tarfile_header(name, mode, size)[: len(headers.header(name, mode, size))]
        )
        assert len(headers.header(name, mode, size)) == 3 * tarfile.BLOCKSIZE


@pytest.mark.parametrize("name", ["ünïcode.py", "a/" + "b" * 120 + ".py", "x" * 101])
def test_names_tarfile_needs_pax_for_go_through_tarfile(name: str) -> None:
    headers = _Headers()
    st = os.stat_result((0o100644, 0, 0, 1, 0, 0, 10, 0, 0, 0))
    assert headers.header(name, 0o644, 10) == flyte_tarinfo(name, st).tobuf(
        tarfile.PAX_FORMAT, "utf-8", "surrogateescape"
    )
