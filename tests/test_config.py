"""The configuration file: embedded defaults, type checks and unknown keys, each error naming its key."""
from __future__ import annotations

import dataclasses
import os
import socket
import typing
from pathlib import Path

import pytest

from mailsrv.core.config import Config, ConfigError, load_config, parse_config


def _keys(cls: type = Config, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """Every configuration key as (dotted name, declared type), tables included."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        dotted, kind = f"{prefix}{field.name}", hints[field.name]
        found.append((dotted, kind))
        if dataclasses.is_dataclass(kind):
            found += _keys(kind, f"{dotted}.")
    return found


def _toml(dotted: str, value: str) -> str:
    """A document setting one dotted key to a TOML value."""
    *tables, key = dotted.split(".")
    return (f"[{'.'.join(tables)}]\n" if tables else "") + f"{key} = {value}\n"


# A value of the wrong TOML type for each declared type.
WRONG_VALUE = {str: "5", Path: "5", int: '"5"', bool: '"yes"', list[str]: '"8.8.8.8"'}


def test_an_empty_file_gives_the_documented_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    config = parse_config("")
    assert config.data_dir == (tmp_path / "xdg" / "mailsrv").resolve()
    assert config.database_url == ""
    assert config.effective_database_url == f"sqlite:///{config.data_dir / 'mailsrv.db'}"
    assert config.listen.web == "0.0.0.0:9998"
    assert (config.listen.smtp, config.listen.submission) == ("0.0.0.0:25", "0.0.0.0:587")
    assert config.web.max_request_bytes == 4 * 1024 * 1024
    assert (config.security.max_failures_per_address, config.security.max_failures_per_login) == (20, 10)
    assert (config.security.failure_window_seconds, config.security.lockout_seconds) == (900, 900)
    assert (config.security.max_failures_per_login_all_addresses, config.security.backoff_seconds) == (100, 60)
    assert config.security.trusted_networks == []
    assert config.dns.nameservers == []
    assert config.smtp.hostname == socket.getfqdn()
    assert (config.smtp.allow_plaintext_auth, config.smtp.allow_catchalls) == (False, True)
    assert config.smtp.relay_networks == []
    assert (config.smtp.max_message_kb, config.smtp.max_recipients) == (51200, 1000)
    assert (config.tls.cert_file, config.tls.key_file) == ("", "")
    assert config.server.workers == 0 and config.server.worker_count == (os.cpu_count() or 1)
    assert (config.delivery.heartbeat_seconds, config.delivery.node_timeout_seconds) == (2, 10)


def test_worker_processes_and_node_heartbeats_can_be_set():
    config = parse_config("[server]\nworkers = 3\n[delivery]\nheartbeat_seconds = 1\nnode_timeout_seconds = 3\n")
    assert (config.server.workers, config.server.worker_count) == (3, 3)
    assert (config.delivery.heartbeat_seconds, config.delivery.node_timeout_seconds) == (1, 3)


@pytest.mark.parametrize("heartbeat, timeout", [(0, 10), (2, 4), (5, 10)])
def test_a_node_timeout_of_two_heartbeats_or_less_is_refused(heartbeat, timeout):
    # A healthy node would stop delivering between two of its own heartbeats.
    with pytest.raises(ConfigError, match="'delivery.node_timeout_seconds' must be more than twice"):
        parse_config(f"[delivery]\nheartbeat_seconds = {heartbeat}\nnode_timeout_seconds = {timeout}\n")


def test_without_xdg_data_home_the_data_dir_is_under_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_config("").data_dir == (tmp_path / ".local" / "share" / "mailsrv").resolve()


def test_every_key_can_be_set(tmp_path):
    config = parse_config(f"""
        data_dir = "{tmp_path}/data"
        database_url = "postgresql+psycopg://mail@db/mail"
        [listen]
        web = "[::1]:8080"
        smtp = ""
        submission = "127.0.0.1:1587"
        [web]
        max_request_bytes = 1024
        [security]
        max_failures_per_address = 1
        max_failures_per_login = 2
        failure_window_seconds = 3
        lockout_seconds = 0
        max_failures_per_login_all_addresses = 4
        backoff_seconds = 5
        trusted_networks = ["10.0.0.0/8"]
        [dns]
        nameservers = ["127.0.0.1:5353", "[::1]:53"]
        [smtp]
        hostname = "mx.example.test"
        allow_plaintext_auth = true
        relay_networks = ["192.0.2.0/24"]
        max_message_kb = 10
        max_recipients = 5
        allow_catchalls = false
        deliver_at_acceptance = false
        [tls]
        cert_file = "/etc/ssl/mail.pem"
        key_file = "/etc/ssl/mail.key"
    """)
    assert config.data_dir == (tmp_path / "data").resolve()
    assert config.effective_database_url == "postgresql+psycopg://mail@db/mail"
    assert (config.listen.web, config.listen.smtp, config.listen.submission) == ("[::1]:8080", "", "127.0.0.1:1587")
    assert config.web.max_request_bytes == 1024
    assert dataclasses.asdict(config.security) == {
        "max_failures_per_address": 1, "max_failures_per_login": 2, "failure_window_seconds": 3, "lockout_seconds": 0,
        "max_failures_per_login_all_addresses": 4, "backoff_seconds": 5, "trusted_networks": ["10.0.0.0/8"]}
    assert config.dns.nameservers == ["127.0.0.1:5353", "[::1]:53"]
    assert dataclasses.asdict(config.smtp) == {
        "hostname": "mx.example.test", "allow_plaintext_auth": True, "relay_networks": ["192.0.2.0/24"],
        "max_message_kb": 10, "max_recipients": 5, "allow_catchalls": False, "deliver_at_acceptance": False}
    assert (config.tls.cert_file, config.tls.key_file) == ("/etc/ssl/mail.pem", "/etc/ssl/mail.key")


def test_a_relative_or_home_data_dir_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_config('data_dir = "data"').data_dir == tmp_path.resolve() / "data"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_config('data_dir = "~/mail"').data_dir == tmp_path.resolve() / "mail"


@pytest.mark.parametrize("dotted, kind", _keys(), ids=[dotted for dotted, _ in _keys()])
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(dotted, kind):
    wrong = "5" if dataclasses.is_dataclass(kind) else WRONG_VALUE[kind]
    with pytest.raises(ConfigError, match=f"'{dotted}' must be"):
        parse_config(_toml(dotted, wrong))


@pytest.mark.parametrize("dotted", [dotted for dotted, kind in _keys() if kind is int])
@pytest.mark.parametrize("value", ["-1", "true", "1.5"])
def test_integers_must_be_whole_and_not_negative(dotted, value):
    with pytest.raises(ConfigError, match=f"'{dotted}' must be a non-negative integer"):
        parse_config(_toml(dotted, value))


def test_nameservers_must_all_be_strings():
    with pytest.raises(ConfigError, match="'dns.nameservers' must be a list of strings"):
        parse_config(_toml("dns.nameservers", '["8.8.8.8", 53]'))


@pytest.mark.parametrize("document, dotted", [
    ("date_dir = '/srv'\n", "date_dir"),
    ("[listen]\nsmpt = '0.0.0.0:25'\n", "listen.smpt"),
    ("[web]\nmax_request_byte = 1\n", "web.max_request_byte"),
    ("[security]\nmax_failures = 1\n", "security.max_failures"),
    ("[dns]\nnameserver = []\n", "dns.nameserver"),
    ("[relay]\nopen = true\n", "relay"),
])
def test_an_unknown_key_is_refused_naming_it(document, dotted):
    with pytest.raises(ConfigError, match=f"unknown configuration key '{dotted}'"):
        parse_config(document)


def test_a_document_that_is_not_toml_is_refused():
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[listen\nweb = 1")


def test_load_config_reads_mailsrv_config_when_no_path_is_given(tmp_path, monkeypatch):
    from_env = tmp_path / "env.toml"
    from_env.write_text('[listen]\nweb = "127.0.0.1:1"\n')
    monkeypatch.setenv("MAILSRV_CONFIG", str(from_env))
    assert load_config(None).listen.web == "127.0.0.1:1"

    explicit = tmp_path / "explicit.toml"
    explicit.write_text('[listen]\nweb = "127.0.0.1:2"\n')
    assert load_config(explicit).listen.web == "127.0.0.1:2"


def test_load_config_without_path_or_environment_uses_the_defaults(monkeypatch):
    monkeypatch.delenv("MAILSRV_CONFIG", raising=False)
    assert load_config(None).listen.web == "0.0.0.0:9998"


def test_a_missing_file_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILSRV_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="cannot read configuration file .*absent.toml"):
        load_config(None)
