"""First contact (issue 17.11): the server prints how to call it, key included, as a banner on stderr."""

from __future__ import annotations

from fastapi.testclient import TestClient

from s2vc_server.app import create_app
from s2vc_server.auth import Auth, banner
from s2vc_server.settings import Settings


def test_banner_with_a_generated_key(tmp_path, capsys):
    settings = Settings(data_dir=tmp_path, port=8123, models={})
    with TestClient(create_app(settings)) as client:
        key = client.app.state.auth.generated
    err = capsys.readouterr().err
    assert key and f"API key:  {key}" in err and "http://127.0.0.1:8123" in err
    assert f'-H "Authorization: Bearer {key}"' in err and "/v1/jobs" in err


def test_banner_in_dev_mode_and_with_fixed_keys(tmp_path):
    dev = Settings(data_dir=tmp_path, dev_mode=True)
    assert "DEV MODE" in banner(dev, Auth(dev)) and "Authorization" not in banner(dev, Auth(dev))
    fixed = Settings(data_dir=tmp_path, api_keys="k" * 24, host="0.0.0.0")
    text = banner(fixed, Auth(fixed))
    assert "k" * 24 not in text and "S2VC_API_KEYS" in text and "http://127.0.0.1:8000" in text
