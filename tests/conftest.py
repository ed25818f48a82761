"""Fixtures every kind of test may use: the simulated API on loopback, a real exporter process
polling it (`live_exporter`), the names the exporter exposes, and structured captured logs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from exporter.cli.reloading import ReloadStatus
from exporter.exposition.collector import WolkvoxCollector
from exporter.logs import LogfmtFormatter
from exporter.state.store import StateStore
from exporter.tools import simulator
from tests.support.harness import TOKEN, Clock, make_config, make_poller
from tests.support.process import Exporter

# Shared fixtures beyond this file: see tests/support/fixtures.py.
pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture
def sim_factory() -> Iterator[Any]:
    servers: list[simulator.SimulatorServer] = []

    def start(
        traffic: simulator.Traffic, clock: Callable[[], float], **kwargs: Any
    ) -> tuple[simulator.Simulator, str]:
        kwargs.setdefault("latency", 0.0)
        sim = simulator.Simulator({"default": traffic}, {TOKEN}, clock=clock, **kwargs)
        srv, url = simulator.serve(sim, poll_interval=0.02)
        servers.append(srv)
        return sim, url

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@dataclass
class Live:
    """An exporter process (not started yet) configured to poll one operation of a simulator."""

    sim: simulator.Simulator
    exporter: Exporter
    state: Path | None  # the state database, when the exporter keeps one


@pytest.fixture
def live_exporter(tmp_path: Path, sim_factory: Any) -> Iterator[Callable[..., Live]]:
    """The set-up of every end-to-end test: the simulator serving `traffic` in real time, and
    `python -m exporter.cli` configured to poll it as operation `name`, the token passed by
    environment. The test starts, kills and stops the process; teardown kills one left running.
    """
    made: list[Exporter] = []

    def make(
        traffic: simulator.Traffic,
        *,
        name: str,
        cap: int,
        polling: dict[str, str],
        state: bool = False,
        debug: bool = True,
        kpis: dict[str, str] | None = None,
        **sim: Any,
    ) -> Live:
        sim.setdefault("latency", 0.01)
        api, url = sim_factory(traffic, time.time, cap=cap, **sim)
        settings: dict[str, Any] = {
            "operations": [{"name": name, "base_url": url, "token": "${LIVE_WOLKVOX_TOKEN}"}],
            "polling": {**polling, "max_records_per_request": cap},
            "kpis": kpis or {},
        }
        path = tmp_path / "state.json" if state else None
        if path is not None:
            settings["state"] = {"path": str(path)}
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump(settings))
        args = ["--config", str(cfg), *(["--log.level", "debug"] if debug else [])]
        exporter = Exporter(tmp_path, args, {"LIVE_WOLKVOX_TOKEN": TOKEN})
        made.append(exporter)
        return Live(api, exporter, path)

    yield make
    for exporter in made:
        if exporter.proc is not None and exporter.proc.poll() is None:
            exporter.kill()


@pytest.fixture
def exposed_names(sim_factory: Any, tmp_path: Path) -> set[str]:
    """Every sample name the exporter exposes after polls of simulated traffic, the optional
    token quota gauges, the skip timestamp (after a gap past max_catchup) and the state file's
    save failures included: what rules and dashboards may read."""
    clock = Clock(1_790_000_100)
    _, url = sim_factory(simulator.Traffic(seed=1), clock)
    store = StateStore(tmp_path / "state.json")
    poller = make_poller(
        make_config(url, token_info_interval="1h", max_catchup="10m"), clock, store=store
    )
    clock.now += 400
    poller.poll_once()
    clock.now += 3600
    poller.poll_once()
    registry = CollectorRegistry(auto_describe=False)
    # An exporter run from a config file also reports its reloads.
    registry.register(WolkvoxCollector([poller], 300, store, ReloadStatus()))
    ProcessCollector(registry=registry)  # process_*, which the CLI serves after the snapshot
    return set(re.findall(r"^(\w+)", generate_latest(registry).decode(), re.M))


@pytest.fixture(autouse=True)
def _structured_caplog(caplog: pytest.LogCaptureFixture) -> None:
    """Render captured logs as the exporter does, so tests see the structured fields too."""
    caplog.handler.setFormatter(LogfmtFormatter())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its kind, the folder it lives in, so `-m unit` selects the same
    tests as `pytest tests/unit`."""
    for item in items:
        kind = item.path.parent.name
        if kind in ("unit", "e2e", "deploy"):
            item.add_marker(kind)
