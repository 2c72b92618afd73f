"""Server settings: S2VC_* variables over a TOML/JSON file over defaults; `s2vc serve` refuses bad settings clearly."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from s2vc.cli import app as cli_app
from s2vc_server.settings import Settings, load_settings


def test_environment_overrides_the_file_and_flags_override_both(tmp_path, monkeypatch):
    config = tmp_path / "server.toml"
    config.write_text('max_sessions = 3\nidle_timeout_s = 9\napi_keys = ["from-the-file-0123456789"]\nmodels = { hq = "/models/hq" }\n')
    monkeypatch.setenv("S2VC_IDLE_TIMEOUT_S", "5")
    monkeypatch.setenv("S2VC_API_KEYS", "key-one-0123456789abc, key-two-0123456789abc")
    settings = load_settings(config, max_sessions=None)
    assert (settings.max_sessions, settings.idle_timeout_s) == (3, 5.0)
    assert settings.api_keys == ["key-one-0123456789abc", "key-two-0123456789abc"]
    assert settings.model_specs == {"default": None, "hq": "/models/hq"}
    assert load_settings(config, max_sessions=7).max_sessions == 7


def test_json_config_and_its_errors(tmp_path):
    config = tmp_path / "server.json"
    config.write_text(json.dumps({"max_batch": 2, "dev_mode": True}))
    assert load_settings(config).max_batch == 2
    config.write_text(json.dumps({"max_bach": 2}))
    with pytest.raises(ValidationError, match="max_bach"):
        load_settings(config)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
    (tmp_path / "server.yaml").write_text("max_batch: 2\n")
    with pytest.raises(ValueError, match="toml or .json"):
        load_settings(tmp_path / "server.yaml")


def test_weak_keys_and_reserved_model_names_are_refused():
    with pytest.raises(ValidationError, match="shorter than 16"):
        Settings(api_keys="short")
    with pytest.raises(ValidationError, match="reserved"):
        Settings(models={"default": "/x"})


def test_serve_reports_bad_settings_and_exits_2(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("max_sessions = 0\n")
    result = CliRunner().invoke(cli_app, ["serve", "--config", str(config)])
    assert result.exit_code == 2 and "max_sessions" in result.output
