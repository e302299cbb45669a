"""Settings: defaults, file, environment, precedence, and one clear message per mistake."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from arting_daemon.app import check_exposure
from arting_daemon.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_starts_with_no_file_and_no_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert (s.host, s.port, s.base_url) == ("127.0.0.1", 8090, "https://api.arting.ai")
    assert s.data_dir.name == "arting-2api"
    assert s.api_keys == [] and s.auth_tokens == [] and not s.auth_required


def test_precedence_file_then_environment_then_command_line(tmp_path):
    cfg = tmp_path / "arting.toml"
    cfg.write_text('port = 9000\nhost = "127.0.0.2"\n[upstream]\nbase_url = "http://x.test"\n')
    s = load_settings(cfg, environ={"ARTING_PORT": "9100"}, overrides={"host": "127.0.0.3"})
    assert s.port == 9100          # environment beats the file
    assert s.host == "127.0.0.3"   # the command line beats both
    assert s.base_url == "http://x.test"  # sections are only for readability


def test_comma_lists_and_the_seed_projects_variable_names(tmp_path):
    s = load_settings(environ={"ARTING_AUTH_TOKEN": "tok-one, tok-two",
                               "API_MASTER_KEY": "k1,k2", "ARTING_CONFIG": ""},
                      config_path=None)
    assert [t.get_secret_value() for t in s.auth_tokens] == ["tok-one", "tok-two"]
    assert [k.get_secret_value() for k in s.api_keys] == ["k1", "k2"]
    assert "tok-one" not in repr(s)  # secrets never show in reprs


@pytest.mark.parametrize("env, expected", [
    ({"ARTING_PORT": "eighty"}, r"environment variable ARTING_PORT: .*integer.*'eighty'"),
    ({"ARTING_PORT": "70000"}, r"ARTING_PORT: .*less than or equal to 65535"),
    ({"ARTING_BASE_URL": "api.arting.ai"}, r"ARTING_BASE_URL: must be an http:// or https://"),
    ({"ARTING_BASIC_AUTH": "nopassword"}, r"ARTING_BASIC_AUTH: .*user:password.*\(hidden\)"),
    ({"ARTING_UNKNOWN_MODELS": "maybe"}, r"ARTING_UNKNOWN_MODELS: .*'fallback' or 'reject'"),
])
def test_a_wrong_value_names_the_key_and_what_is_allowed(env, expected):
    with pytest.raises(ConfigError, match=expected):
        load_settings(environ=env)


def test_file_mistakes_are_explained(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="Unknown setting `prot`"):
        load_settings(bad, environ={})
    bad.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_wrong_value_stops_the_daemon_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "arting_daemon"], capture_output=True,
                          text=True, env={"ARTING_PORT": "x", "PATH": "", "HOME": str(tmp_path)},
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "ARTING_PORT" in proc.stderr


def test_open_api_on_a_network_address_is_refused():
    with pytest.raises(ConfigError, match="API_MASTER_KEY"):
        check_exposure(Settings(host="0.0.0.0"))
    check_exposure(Settings(host="0.0.0.0", api_keys=["k"]))
    check_exposure(Settings(host="0.0.0.0", allow_insecure=True))
    check_exposure(Settings(host="::1"))


def test_a_container_published_on_loopback_needs_no_key():
    """In a container the daemon listens on all interfaces; the host's side decides."""
    check_exposure(Settings(host="0.0.0.0", published_host="127.0.0.1"))
    check_exposure(Settings(host="::", published_host="::1"))
    for published in ("0.0.0.0", "192.168.1.5", "my-host"):
        with pytest.raises(ConfigError, match=f"published on {published}.*API_MASTER_KEY"):
            check_exposure(Settings(host="0.0.0.0", published_host=published))
    check_exposure(Settings(host="0.0.0.0", published_host="0.0.0.0", api_keys=["k"]))
    check_exposure(Settings(host="127.0.0.1", published_host="0.0.0.0"))   # reaches nobody


def test_example_config_is_valid_and_mentions_every_setting():
    text = (ROOT / "arting.example.toml").read_text()
    for name in Settings.model_fields:
        assert re.search(rf"^#? ?{name} = ", text, re.M), f"{name} missing from the example"
    uncommented = "\n".join(line.removeprefix("# ") if re.match(r"^# \w+ = ", line) else line
                            for line in text.splitlines())
    path = Path(ROOT / "tests" / ".example-check.toml")
    try:
        path.write_text(uncommented)
        load_settings(path, environ={})
    finally:
        path.unlink(missing_ok=True)


def test_a_retired_setting_in_the_file_is_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "arting.toml"
    path.write_text("poll_first_delay = 1.0\nport = 8123\n")
    settings = load_settings(path, environ={})
    assert settings.port == 8123
    assert any("poll_first_delay" in r.getMessage() and "no longer used" in r.getMessage()
               for r in caplog.records)
