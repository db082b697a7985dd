"""The agent's flags and environment (agent/config.py), through the real `mlops-operator agent` parser."""

import pytest

from mlops_operator.agent import config
from mlops_operator.cli import build_parser


def parse(argv, monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return config.from_args(build_parser().parse_args(["agent", *argv]))


def test_environment_gives_defaults_and_flags_win(monkeypatch):
    settings = parse(["--sample-rate", "0.5"], monkeypatch, MLOPS_AGENT_UPSTREAM_PORT="8080",
                     MLOPS_AGENT_SAMPLE_RATE="0.1", MLOPS_AGENT_COLUMNS="a, b", MLOPS_AGENT_LOG_PAYLOADS="true",
                     MLOPS_AGENT_LOG_URI="s3://bucket/log/", MLOPS_AGENT_MODEL_URI="s3://models/iris/3")
    assert settings.upstream_port == 8080 and settings.sample_rate == 0.5
    assert settings.columns == ("a", "b") and settings.log_payloads is True
    assert settings.log_uri == "s3://bucket/log" and settings.logging
    assert len(settings.model_hash) == 12 and settings.listen_port == 9081


@pytest.mark.parametrize(("argv", "field"), [
    ([], "--upstream-port"),
    (["--upstream-port", "8080", "--listen", "nowhere"], "--listen"),
    (["--upstream-port", "8080", "--log-payloads", "maybe"], "--log-payloads"),
])
def test_bad_settings_name_the_flag(argv, field, monkeypatch):
    monkeypatch.delenv("MLOPS_AGENT_UPSTREAM_PORT", raising=False)
    with pytest.raises(ValueError, match=field):
        parse(argv, monkeypatch)


def test_out_of_range_numbers_are_refused_by_the_parser(capsys):
    for argv in (["--sample-rate", "1.5"], ["--buffer-bytes", "0"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["agent", "--upstream-port", "1", *argv])
    assert "between 0 and 1" in capsys.readouterr().err
