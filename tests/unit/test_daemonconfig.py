"""/etc/shoal/daemon.json: what both daemons accept, and the errors for what they do not."""
from __future__ import annotations

import json

import pytest

from agent_runtime import daemonconfig
from agent_runtime.daemonconfig import ConfigError, load, parse, pick, reloadable, size_bytes


def test_a_full_file_parses_to_checked_values():
    values = parse(json.dumps({
        "data-root": "/srv/shoal/", "insecure-registries": ["192.0.2.1:5000", "198.18.0.0/15", "registry.lan"],
        "log-level": "INFO", "log-format": "json", "metrics-addr": "192.0.2.11:9323",
        "log-opts": {"max-size": "10m", "max-file": "5"},
        "default-address-pools": [{"base": "198.18.0.0/16", "size": 24}]}))
    assert values["data-root"] == "/srv/shoal"
    assert values["default-address-pools"] == [{"base": "198.18.0.0/16", "size": 24}]
    assert values["log-level"] == "info"
    assert values["insecure-registries"] == ["192.0.2.1:5000", "198.18.0.0/15", "registry.lan"]
    assert reloadable(values) == {"insecure-registries": values["insecure-registries"],
                                  "log-level": "info", "log-format": "json"}


def test_unknown_keys_are_refused_in_dockerds_words():
    with pytest.raises(ConfigError, match="the following directives don't match any configuration option: "
                                          "debug, registry-mirror"):
        parse('{"debug": true, "registry-mirror": "x", "log-level": "info"}', "/etc/shoal/daemon.json")


@pytest.mark.parametrize("doc,message", [
    ('{"log-level": "loud"}', "log-level: must be one of debug, info, warning, error"),
    ('{"log-format": "xml"}', "log-format: must be one of text, json"),
    ('{"data-root": "relative/dir"}', "data-root: must be an absolute path"),
    ('{"insecure-registries": "192.0.2.1:5000"}', "insecure-registries: must be a list of strings"),
    ('{"insecure-registries": ["http://192.0.2.1:5000"]}', "without a scheme"),
    ('{"metrics-addr": "localhost"}', "metrics-addr: 'localhost' is not IP:PORT"),
    ('{"metrics-addr": "192.0.2.1:99999"}', "is not IP:PORT"),
    ('{"log-opts": {"max-size": "1"}}', "is not a size of at least 4k"),
    ('{"log-opts": {"max-file": "0"}}', "max-file '0' must be a number from 1 to 100"),
    ('{"log-opts": {"labels": "a"}}', "unknown log option(s) labels"),
    ('{"default-address-pools": []}', "default-address-pools: must be a non-empty list of pools"),
    ('{"default-address-pools": [{"base": "10.20.0.0/16"}]}', "exactly base and size"),
    ('{"default-address-pools": [{"base": "10.20.0.1/16", "size": 24}]}', "has host bits set"),
    ('{"default-address-pools": [{"base": "10.20.0.0/16", "size": 8}]}', "must be a prefix length from 16 to 29"),
    ('{"default-address-pools": [{"base": "10.20.0.0/16", "size": "24"}]}', "must be a prefix length"),
    ('{"default-address-pools": [{"base": "10.20.0.0/16", "size": 24}, {"base": "10.30.0.0/16", "size": 26}]}',
     "every pool must have the same size"),
    ('{"log-level": "info",}', "invalid JSON at line 1"),
    ('["log-level"]', "the top level must be a JSON object"),
])
def test_bad_values_name_the_key_and_the_problem(doc, message):
    with pytest.raises(ConfigError) as info:
        parse(doc, "/etc/shoal/daemon.json")
    assert "unable to configure the daemon with file /etc/shoal/daemon.json" in str(info.value)
    assert message in str(info.value)


def test_the_default_file_may_be_missing_an_explicit_one_may_not(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOAL_CONFIG_FILE", str(tmp_path / "absent.json"))
    assert load(None) == (tmp_path / "absent.json", {})
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "absent.json")
    (tmp_path / "empty.json").write_text("")
    assert load(tmp_path / "empty.json")[1] == {}


def test_flags_win_over_the_file_which_wins_over_defaults():
    values = {"log-level": "info", "insecure-registries": ["a:1"]}
    assert pick("debug", values, "log-level", "warning") == "debug"
    assert pick(None, values, "log-level", "warning") == "info"
    assert pick([], values, "insecure-registries", []) == ["a:1"]
    assert pick(None, {}, "log-level", "warning") == "warning"


def test_sizes_are_dockers_binary_units():
    assert size_bytes("10m") == 10 * 1024 * 1024 and size_bytes("4k") == 4096 and size_bytes("5000") == 5000


def test_every_key_is_documented_in_the_module_docstring():
    for key in daemonconfig.KEYS:
        assert f'"{key}"' in daemonconfig.__doc__
