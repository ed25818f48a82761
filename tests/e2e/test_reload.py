"""Reloading the config of a running exporter, by POST /-/reload and by SIGHUP: an operation
added, one removed, a token rotated in its token file, a broken file and a change that needs a
restart refused, then a good file. Counters stay exact against the simulator's ground truth,
the old token is never used once the reload has answered, and no token serves two requests."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.tools import simulator
from exporter.tools.simulator import Traffic
from tests.support.harness import expected_counts
from tests.support.process import Exporter, Samples, interactions

POLLING = {
    "interval": "1s",
    "settle_delay": "1s",
    "lookback": "3s",
    "request_spacing": "10ms",
    "retry_backoff": "50ms",
    "timeout": "2s",
}


def traffic(seed: int, start: int, seconds: int) -> Traffic:
    return Traffic(
        seed=seed,
        rate_per_minute=240,
        daily_curve=False,
        late_fraction=0.1,
        late_max=1.5,
        duplicate_fraction=0.05,
        start=start,
        stop=start + seconds,
    )


def post(exporter: Exporter, path: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{exporter.port}{path}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def value(samples: Samples, name: str, **labels: str) -> float | None:
    for key, v in samples.get(name, {}).items():
        if all(dict(key).get(k) == want for k, want in labels.items()):
            return v
    return None


def wait_for(exporter: Exporter, done: Any, what: str, timeout: float = 90) -> Samples:
    deadline = time.time() + timeout
    while time.time() < deadline:
        samples = exporter.metrics()
        if done(samples):
            return samples
        time.sleep(0.3)
    pytest.fail(f"{what}; log tail:\n" + exporter.log()[-3000:])


def collected(operation: str, until: float) -> Any:
    def check(samples: Samples) -> bool:
        seen = value(samples, "wolkvox_collected_until_timestamp_seconds", operation=operation)
        return seen is not None and seen >= until

    return check


def test_reload_adds_removes_rotates_refuses_and_stays_exact(tmp_path: Path) -> None:
    start = int(time.time()) + 8
    alpha, beta = traffic(1, start, 6), traffic(2, start, 40)
    tenants = {"alpha": alpha, "beta": beta, "gamma": traffic(3, start + 10**6, 1)}
    tokens = {"tok-alpha", "tok-beta-1", "tok-beta-2", "tok-gamma"}
    sim = simulator.Simulator(tenants, tokens, latency=0.005)
    srv, url = simulator.serve(sim, poll_interval=0.02)
    token_file = tmp_path / "beta.token"
    token_file.write_text("tok-beta-1\n")

    def write(operations: list[dict[str, Any]], **extra: Any) -> None:
        settings = {
            "operations": operations,
            "polling": POLLING,
            "state": {"path": str(tmp_path / "state.db")},
            **extra,
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))

    a = {"name": "alpha", "base_url": f"{url}/alpha", "token": "tok-alpha"}
    b = {"name": "beta", "base_url": f"{url}/beta", "token_file": str(token_file)}
    write([a, b])
    exporter = Exporter(tmp_path, ["--config", str(tmp_path / "config.yaml")]).start()
    try:
        exporter.wait_first_poll(start)
        # alpha's traffic is over and counted: remove it, add gamma, rotate beta's token.
        done = wait_for(
            exporter, collected("alpha", alpha.quiet_after + 5), "alpha never caught up"
        )
        assert interactions(done, "alpha") == expected_counts(alpha.all_rows())
        gamma_start = int(time.time()) + 6
        tenants["gamma"] = gamma = traffic(3, gamma_start, 10)
        g = {"name": "gamma", "base_url": f"{url}/gamma", "token": "tok-gamma"}
        token_file.write_text("tok-beta-2\n")
        write([b, g])
        status, text = post(exporter, "/-/reload")
        assert status == 200, text
        assert "added gamma" in text and "removed alpha" in text and "changed beta" in text
        old_token_uses = sim.stats.by_token["tok-beta-1"]
        sim.tokens.discard("tok-beta-1")  # from now on the API refuses it
        after = exporter.metrics()
        assert value(after, "wolkvox_up", operation="alpha") is None  # gone from /metrics
        assert value(after, "wolkvox_exporter_config_last_reload_successful") == 1

        # A broken file, then a change that needs a restart: both refused, the old config runs.
        (tmp_path / "config.yaml").write_text("operations: [\n")
        status, text = post(exporter, "/-/reload")
        assert status == 500 and "not valid YAML" in text
        write([b, g], state={"path": str(tmp_path / "elsewhere.db")})
        status, text = post(exporter, "/-/reload")
        assert status == 500 and "state: changes to it need a restart" in text
        refused = exporter.metrics()
        assert value(refused, "wolkvox_exporter_config_last_reload_successful") == 0
        loaded_at = value(refused, "wolkvox_exporter_config_last_reload_success_timestamp_seconds")
        assert exporter.get("/-/healthy") == "OK\n"

        # A good file again, by signal.
        write([b, g])
        assert exporter.proc is not None
        exporter.proc.send_signal(signal.SIGHUP)
        good = wait_for(
            exporter,
            lambda s: value(s, "wolkvox_exporter_config_last_reload_successful") == 1,
            "SIGHUP never reloaded the good file",
        )
        later = value(good, "wolkvox_exporter_config_last_reload_success_timestamp_seconds")
        assert later is not None and loaded_at is not None and later > loaded_at

        end = max(beta.quiet_after, gamma.quiet_after) + 5
        final = wait_for(
            exporter,
            lambda s: collected("beta", end)(s) and collected("gamma", end)(s),
            "beta and gamma never caught up",
        )
        assert interactions(final, "beta") == expected_counts(beta.all_rows())
        assert interactions(final, "gamma") == expected_counts(gamma.all_rows())
        outcomes = {
            dict(k)["outcome"]: v
            for k, v in final["wolkvox_api_requests_total"].items()
            if dict(k)["operation"] == "beta"
        }
        assert outcomes.get("unauthorized", 0) == 0
        assert sim.stats.by_token["tok-beta-1"] == old_token_uses  # never again after the reload
        assert sim.stats.violations == 0
    finally:
        code = exporter.stop()
        srv.shutdown()
        srv.server_close()
    assert code == 0
    log = exporter.log()
    assert "config reloaded" in log and "config not reloaded" in log
    assert "Traceback" not in log
    for secret in ("tok-beta-1", "tok-beta-2", "tok-gamma"):
        assert secret not in log
