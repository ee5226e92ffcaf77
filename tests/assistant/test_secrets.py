"""The API key: never in a repr, a traceback (even one that prints every local, as Textual's does) or an error
message; written owner-only; never sent in plain http to another machine unless the user says so."""

from __future__ import annotations

import io
import stat

import pytest
from conftest import free_port
from rich.console import Console
from rich.traceback import Traceback

from assistant.backends import load_backend
from assistant.backends.base import BackendError
from assistant.config import Secret, load_config, save_settings

KEY = "sk-test-0123456789-SECRET"


def with_key(home, **settings):
    home.mkdir(parents=True, exist_ok=True)
    lines = [f'api_key = "{KEY}"', 'backend = "openai"'] + [f'{k} = "{v}"' for k, v in settings.items()]
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    return load_config(home)


def shown_traceback(exc: BaseException) -> str:
    """The traceback as Textual prints it when an app crashes: rich, with every frame's locals."""
    console = Console(file=io.StringIO(), width=200)
    console.print(Traceback.from_exception(type(exc), exc, exc.__traceback__, show_locals=True))
    return console.file.getvalue()


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:{port}/v1", "http://x:abc/v1", "htp://127.0.0.1/v1"])
def test_the_key_is_in_no_repr_traceback_or_error_message(tmp_path, base_url):
    """A server that is down, a malformed URL (httpx's InvalidURL used to escape as a traceback) and a wrong scheme
    are each one clear error; the key is in none of them, nor in the locals of the frames they pass through."""
    config = with_key(tmp_path / "home", base_url=base_url.format(port=free_port()))
    assert KEY not in repr(config) and KEY not in str(config) and config.api_key.reveal() == KEY
    with pytest.raises(BackendError) as caught:
        config.backend_factory()()
    assert "base_url" in str(caught.value) or "cannot reach" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in shown_traceback(caught.value)


def test_a_key_goes_in_plain_http_only_to_this_machine_unless_allowed():
    remote = "http://192.0.2.10:8080/v1"  # TEST-NET: nothing is sent, the check comes first
    with pytest.raises(BackendError, match="refusing to send the API key in plain http to 192.0.2.10.*insecure_http"):
        load_backend("openai", base_url=remote, api_key=Secret(KEY), model="m")
    assert load_backend("openai", base_url=remote, api_key=Secret(KEY), model="m", allow_insecure_http=True)
    assert load_backend("openai", base_url=remote, model="m")  # no key, nothing to protect
    for url in ("https://192.0.2.10/v1", "http://127.0.0.1:8080/v1", "http://localhost:8080/v1", "http://[::1]:80/v1"):
        backend = load_backend("openai", base_url=url, api_key=Secret(KEY), model="m")
        assert backend.client.headers["Authorization"] == f"Bearer {KEY}" and KEY not in repr(backend.client.headers)


def test_allow_insecure_http_is_a_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDASSIST_ALLOW_INSECURE_HTTP", "1")
    assert load_config(tmp_path).allow_insecure_http is True


def test_settings_are_saved_owner_only_with_a_key_and_keep_their_comments(tmp_path):
    home = tmp_path / "home"
    with_key(home)
    path = home / "config.toml"
    path.write_text("# my server\n" + path.read_text() + "k = 5  # fewer is faster\n")
    path.chmod(0o644)
    save_settings(home, {"k": 3, "model": "served-model"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "# my server" in text and "k = 3  # fewer is faster" in text
    config = load_config(home)
    assert (config.k, config.model, config.api_key) == (3, "served-model", Secret(KEY))
    assert [p.name for p in home.iterdir()] == ["config.toml"]  # written in one step: no temporary left

    plain = tmp_path / "plain"
    save_settings(plain, {"k": 4})
    assert stat.S_IMODE((plain / "config.toml").stat().st_mode) == 0o644 and load_config(plain).k == 4
