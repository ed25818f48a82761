"""The command line as a user runs it: a real process, its exit codes and what it prints."""

from __future__ import annotations

import subprocess
import sys

from exporter.cli import main as cli
from tests.unit.test_config import VALID, write


def test_check_command_exit_codes_and_no_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WOLKVOX_TEST_TOKEN", "abc123")
    good = write(tmp_path, VALID)
    assert cli.main(["check", "--config", str(good)]) == 0
    assert "config OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("operations: []\nweb: {listen_address: nowhere}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "check", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "config invalid: 2 errors" in proc.stderr
    assert "operations: List should have at least 1 item" in proc.stderr
    assert "web.listen_address: 'nowhere' is not HOST:PORT" in proc.stderr
