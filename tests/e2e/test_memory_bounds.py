"""A huge answer measured in a process of its own: memory stays under the response limit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.test_bounded_answers import _MEASURE, endless_chunks, gzip_bomb


@pytest.mark.parametrize("reply", [gzip_bomb, endless_chunks], ids=["gzip-bomb", "200MB"])
def test_a_huge_answer_costs_no_more_memory_than_the_limit(raw_api, reply):
    url = raw_api(reply)
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, url], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["outcome"] == "too_large"
    assert result["peak_mb"] < 300, result  # 64 MiB of body at most, and the interpreter
