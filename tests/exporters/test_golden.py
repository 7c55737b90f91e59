"""`cycletime metrics --at` on a small fixed store prints exactly the golden file (make golden rewrites it)."""

from __future__ import annotations

import difflib

from golden import GOLDEN, exposition


def test_the_exposition_is_byte_for_byte_the_golden_file() -> None:
    got, want = exposition(), GOLDEN.read_bytes()
    if got != want:
        diff = "\n".join(
            difflib.unified_diff(
                want.decode().splitlines(), got.decode().splitlines(), "golden", "now", lineterm="", n=1
            )
        )
        raise AssertionError(f"the exposition changed (review, then `make golden`):\n{diff[:6000]}")
    assert b"cycletime_request_to_release_seconds_bucket" in got and got.endswith(b"\n")
