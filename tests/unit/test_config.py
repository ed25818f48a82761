from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import main as cli
from exporter.settings import config, durations

VALID = """
operations:
  - name: bogota
    server: "0032"
    token: ${WOLKVOX_TEST_TOKEN}
polling:
  interval: 5m
  lookback: 0s
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as info:
        config.load(write(tmp_path, text))
    return info.value.details


def test_valid_config_has_documented_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("WOLKVOX_TEST_TOKEN", "abc123")
    cfg = config.load(write(tmp_path, VALID))
    op = cfg.operations[0]
    assert op.url == "https://wv0032.wolkvox.com/api/v2/reports_manager.php"
    assert op.secret() == "abc123"
    assert op.timezone == "America/Bogota"
    assert cfg.polling.interval == 300
    assert cfg.polling.settle_delay == 60
    assert cfg.polling.lookback == 0
    assert cfg.polling.max_catchup == 86400
    assert cfg.labels.routing_answer.max_values == 50
    assert cfg.web.listen_address == ":9856"
    assert "abc123" not in repr(cfg)


def test_example_config_is_valid(monkeypatch):
    monkeypatch.setenv("WOLKVOX_TOKEN", "x")
    cfg = config.load(Path(__file__).parent.parent.parent / "config.example.yaml")
    assert len(cfg.operations) >= 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("1d", 86400),
        ("250ms", 0.25),
        ("0s", 0),
        (120, 120),
    ],
)
def test_durations_accept_prometheus_style(value, seconds):
    assert durations.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "m5", "", "-5m", True, "1.5m"])
def test_bad_durations_say_what_is_expected(value):
    with pytest.raises(ValueError, match="duration"):
        durations.parse_duration(value)


def test_every_mistake_is_reported_with_its_location(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    details = errors_of(
        tmp_path,
        """
operations:
  - name: ok
    server: 32
    token: ${NOT_SET_ANYWHERE}
    timezone: Mars/Olympus
    colour: blue
polling:
  interval: soon
""",
    )
    text = "\n".join(details)
    assert "operations.0.token: environment variable NOT_SET_ANYWHERE is not set" in text
    assert "operations.0.server: must be a quoted string" in text
    assert "operations.0.timezone: unknown IANA time zone 'Mars/Olympus'" in text
    assert "operations.0.colour: unknown key" in text
    assert "polling.interval: 'soon' is not a duration" in text


def test_token_and_token_file_are_exclusive_and_one_is_required(tmp_path):
    details = errors_of(tmp_path, "operations:\n  - name: a\n    server: '1'\n")
    assert details == ["operations.0: set exactly one of token or token_file"]


def test_token_file_is_read_and_missing_file_is_named(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    cfg = config.load(
        write(tmp_path, f"operations:\n  - name: a\n    server: '1'\n    token_file: {secret}\n")
    )
    assert cfg.operations[0].secret() == "from-file"
    details = errors_of(
        tmp_path, f"operations:\n  - name: a\n    server: '1'\n    token_file: {tmp_path}/nope\n"
    )
    assert details[0].startswith(f"operations.0.token_file: cannot read {tmp_path}/nope")


def test_duplicate_operation_names_are_refused(tmp_path):
    op = "  - {name: a, server: '1', token: t}\n"
    details = errors_of(tmp_path, "operations:\n" + op + op)
    assert details == ["(top level): operation names must be unique; repeated: a"]


def test_timeout_above_the_api_limit_is_refused(tmp_path):
    details = errors_of(
        tmp_path, "operations:\n  - {name: a, server: '1', token: t}\npolling:\n  timeout: 2m\n"
    )
    assert details == ["polling: timeout must be above 0s and at most 60s, the API's own limit"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(config.ConfigError, match="not valid YAML at line 2, column 1"):
        config.load(write(tmp_path, "operations:\n\t- name: a\n"))


def test_run_without_config_or_demo_explains_itself(capsys):
    assert cli.main([]) == 1
    assert "--config FILE or --demo" in capsys.readouterr().err


def test_readme_documents_every_flag():
    """The flag tables (docs/configuration.md, docs/backfill.md) cannot drift from the parser
    (the blackbox_exporter lesson)."""
    docs = Path(__file__).parent.parent.parent / "docs"
    readme = (docs / "configuration.md").read_text() + (docs / "backfill.md").read_text()
    flags = [
        opt
        for name, parser in cli.parsers().items()
        if name in ("run", "check", "backfill")
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt not in ("--help", "--version", "--config.file")
    ]
    assert flags
    for flag in flags:
        assert f"`{flag}" in readme, flag


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # PyYAML keeps the last of two equal keys; Go's strict decoder refuses them.
        (
            "polling:\n  interval: 5m\npolling:\n  interval: 1m\n",
            "at line 3: duplicate key 'polling' (first at line 1)",
        ),
        ("a: &x [1, 2]\nb: *x\n", "at line 2: aliases (*x) are not allowed"),
        ("[" * 20000 + "]" * 20000, "nested deeper than 32 levels"),
        ("x: " + "y" * (1 << 20) + "\n", "larger than 1024 KiB"),
    ],
)
def test_hostile_yaml_is_refused_at_once_with_a_location(tmp_path, text, says, capsys):
    """Duplicate keys, aliases (a billion-laughs file), deep nesting and huge files."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert cli.main(["check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
