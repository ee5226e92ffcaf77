"""`medassist serve` and `medassist serve keys` from the command line."""

from __future__ import annotations

import json

from test_cli import home, run  # noqa: F401  (a home whose starter notes count as done; the CLI in process)


def test_keys_add_prints_the_key_once_and_list_and_revoke_never_show_it(home):
    added = run("serve", "keys", "add", "ward 7")
    assert added.exit_code == 0
    key = added.stdout.strip()
    assert key.startswith("mda_") and len(key) > 40  # stdout holds the key alone, for scripts
    stored = (home / "api_keys.json").read_text()
    assert key not in stored and (home / "api_keys.json").stat().st_mode & 0o077 == 0
    key_id = json.loads(stored)[0]["id"]

    listed = run("serve", "keys", "list")
    assert key_id in listed.stdout and "ward 7" in listed.stdout and key not in listed.output
    assert "1 active keys" in listed.output

    revoked = run("serve", "keys", "revoke", key_id)
    assert revoked.exit_code == 0 and key not in revoked.output
    assert "0 active keys" in run("serve", "keys", "list").output
    unknown = run("serve", "keys", "revoke", "nosuchid")
    assert unknown.exit_code == 1 and "No key has the id" in unknown.output


def test_serving_off_loopback_without_a_key_is_refused_in_one_line(home):
    result = run("serve", "--host", "0.0.0.0", "--port", "1")
    assert result.exit_code == 3
    assert "without an API key" in result.output and "serve keys add" in result.output
    assert "Traceback" not in result.output


def test_serve_help_names_host_port_workers_and_keys():
    result = run("serve", "--help")
    assert result.exit_code == 0
    for word in ("--host", "--port", "--workers", "keys", "127.0.0.1", "8765"):
        assert word in result.output


def test_without_the_server_packages_it_says_what_to_install(home, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "fastapi", None)  # as if `pip install -e .` only
    result = run("serve")
    assert result.exit_code == 3 and "pip install 'medassist[serve]'" in result.output and "fastapi" in result.output
