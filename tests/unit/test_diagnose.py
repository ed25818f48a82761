"""`check --connect` as a first-run diagnosis: it names a wrong `timezone` by the offset it sees,
in both ways the API may select rows, and tells a 404 for what it may mean."""

from __future__ import annotations

import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from exporter.cli import main as cli
from exporter.tools.simulator import SELECT_BY, Traffic
from tests.support.harness import TOKEN

BOGOTA, MEXICO = "America/Bogota", "America/Mexico_City"  # UTC-5 and UTC-6, no DST


def check_connect(
    tmp_path: Path, url: str, timezone: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
operations:
  - {{name: ops, base_url: "{url}", token: "{TOKEN}", timezone: {timezone}}}
polling: {{request_spacing: 0s, max_records_per_request: 2000}}
"""
    )
    code = cli.main(["check", "--config", str(path), "--connect"])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("select_by", SELECT_BY)
@pytest.mark.parametrize(
    ("api_zone", "configured", "says"),
    [
        (BOGOTA, BOGOTA, ("the dates agree with the configured zone",)),
        # Configured ahead of the API: asked windows are not over yet in its wall time.
        (
            MEXICO,
            BOGOTA,
            (
                "(59|60|61) min before now in America/Bogota",
                r"the API's clock reads 60 min behind America/Bogota \(UTC-05:00\): is `timezone` "
                "America/Mexico_City",
            ),
        ),
        # Configured behind: rows are dated in its future.
        (
            BOGOTA,
            MEXICO,
            (
                "dated in the future of America/Mexico_City, the newest (59|60|61) min ahead of "
                "now: `timezone` is behind the API's; the API's clock reads 60 min ahead of "
                r"America/Mexico_City \(UTC-06:00\): is `timezone` America/Bogota",
            ),
        ),
    ],
)
def test_a_wrong_timezone_is_named_by_its_offset(
    tmp_path, sim_factory, capsys, select_by, api_zone, configured, says
):
    # Sessions close within two minutes: the newest row is dated within a minute or two of now.
    traffic = Traffic(
        seed=5, zone=ZoneInfo(api_zone), daily_curve=False, select_by=select_by, close_delay=120
    )
    sim, url = sim_factory(traffic, time.time, cap=2000)
    code, out = check_connect(tmp_path, url, configured, capsys)
    assert code == 0, out
    assert "ops: reachable, token valid" in out
    for pattern in says:
        assert re.search(pattern, out), out
    if api_zone == configured:
        assert "timezone` America" not in out
    # Asked a span around now, split at the cap newest-first: a few calls, not the whole span.
    made = re.search(r"(\d+) request\(s\)", out)
    assert made is not None
    calls = int(made.group(1))
    assert 1 <= calls <= 10
    assert f"quota used {calls + 1}/100000 today" in out  # token_info is a call too
    assert ("answers at the record cap (2000) were split" in out) == (calls > 1)
    assert ("dated before the range that returned them" in out) == (select_by == "close")
    assert sim.stats.violations == 0
    assert TOKEN not in out


def test_no_records_says_what_the_404_may_mean(tmp_path, sim_factory, capsys):
    now = int(time.time())
    traffic = Traffic(seed=5, start=now - 10 * 86400, stop=now - 9 * 86400)
    sim, url = sim_factory(traffic, time.time)
    code, out = check_connect(tmp_path, url, BOGOTA, capsys)
    assert code == 0, out
    assert "no records from" in out and "'no records' 404" in out
    assert "diagram_9 is not available on this server" in out
    assert sim.stats.requests == 3 + 1  # each span once, then token_info


def test_a_foreign_404_and_a_bad_token_fail_the_check(tmp_path, sim_factory, capsys):
    _, url = sim_factory(Traffic(seed=5), time.time)
    code, out = check_connect(tmp_path, url + "/not/here", BOGOTA, capsys)
    assert code == 1 and "NOT reachable" in out and "check base_url" in out
    path = tmp_path / "config.yaml"
    path.write_text(path.read_text().replace(TOKEN, "wrong-token").replace("/not/here", ""))
    assert cli.main(["check", "--config", str(path), "--connect"]) == 1
    out = capsys.readouterr().out
    assert "token INVALID" in out and "wrong-token" not in out
