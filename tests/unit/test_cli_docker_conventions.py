"""The docker CLI's conventions at the command line (shoal.cli.main.run): exit code 125 and
docker's wording for a wrong command line, Go's `--flag=BOOL` spellings, docker's flag names."""

from __future__ import annotations

import pytest

import shoal.cli.main as main
from shoal.cli.main import USAGE_ERROR, docker_bool_args, run
from shoal.cli.services import service_create
from shoal.cli.containers import run as run_command


@pytest.mark.parametrize("args, message", [
    (["service", "create", "--bogus", "busybox"], "unknown flag: --bogus\nSee 'shoal service create --help'."),
    (["service", "ls", "-z"], "unknown shorthand flag: 'z' in -z\nSee 'shoal service ls --help'."),
    (["service", "create"], "\"shoal service create\" requires at least 1 argument.\n"
                            "See 'shoal service create --help'."),
    (["service", "inspect"], "\"shoal service inspect\" requires at least 1 argument.\n"
                             "See 'shoal service inspect --help'."),
    (["node", "ls", "--format"], "flag needs an argument: --format"),
    (["stack", "deploy", "-c", "x.yml", "--timeout", "1.5", "s"],
     'invalid argument "1.5" for "--timeout" flag: time: missing unit in duration "1.5"'),
])
def test_a_wrong_command_line_exits_125_with_dockers_words(capsys, args, message):
    assert run(args) == USAGE_ERROR
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


@pytest.mark.parametrize("args, expected", [
    (["--detach=false", "-q", "busybox"], ["-q", "busybox"]),
    (["--detach=true", "busybox", "--detach=false"], ["--detach", "busybox", "--detach=false"]),
    (["-d=1", "--name", "--detach=false", "busybox"], ["--detach", "--name", "--detach=false", "busybox"]),
    (["--init=false", "busybox"], ["--no-init", "busybox"]),
    (["--", "--detach=false"], ["--", "--detach=false"]),
])
def test_go_boolean_spellings(args, expected):
    # service create takes no options after IMAGE (its COMMAND may have its own flags)
    assert docker_bool_args(service_create, args)[:len(expected)] == expected


def test_detach_false_means_wait_and_run_h_is_the_hostname():
    params = service_create.make_context("create", ["--detach=false", "--replicas-max-per-node", "2", "busybox"]).params
    assert params["detach"] is False and params["max_replicas"] == 2
    params = service_create.make_context("create", ["-d=true", "--max-replicas", "3", "busybox"]).params
    assert params["detach"] is True and params["max_replicas_alias"] == 3
    params = run_command.make_context("run", ["-h", "myhost", "--rm=true", "busybox", "hostname", "-h"]).params
    assert params["hostname"] == "myhost" and params["remove"] is True
    assert params["command"] == ("hostname", "-h")
    assert main.cli.commands["service"].commands["create"] is service_create


def test_replicas_max_per_node_sets_the_placement():
    from shoal.cli.service_flags import FlagError, build_spec
    assert build_spec("busybox", [], {"max_replicas": 2}).task.placement.max_replicas == 2
    assert build_spec("busybox", [], {"max_replicas_alias": 3}).task.placement.max_replicas == 3
    with pytest.raises(FlagError, match='"--replicas-max-per-node" flag: must be between 0 and'):
        build_spec("busybox", [], {"max_replicas": -1})


@pytest.mark.parametrize("args", [["node", "ls", "-f", "bogus=1"], ["service", "ls", "--filter", "bogus=1"],
                                  ["service", "ps", "-f", "bogus=1", "web"], ["node", "ps", "-f", "bogus=1"],
                                  ["secret", "ls", "-f", "bogus=1"], ["config", "ls", "-f", "bogus=1"],
                                  ["network", "ls", "-f", "bogus=1"]])
def test_an_unknown_filter_is_refused_in_the_daemons_words(capsys, args):
    """moby's filters.invalidFilter, before anything is asked of the daemon (there is none here)."""
    assert run(["-H", "unix:///nonexistent/shoal.sock", *args]) == 1
    assert capsys.readouterr().err == "Error response from daemon: invalid filter 'bogus'\n"


def test_service_logs_prefixes_12_character_task_ids_as_docker():
    from shoal.cli.service_logs import task_label
    name = "web.1.abcdefghijklmnopqrstuvwxy"
    assert task_label(name) == "web.1.abcdefghijkl"
    assert task_label(name, no_trunc=True) == name
    assert task_label(name, no_task_ids=True) == "web.1"


async def test_service_logs_takes_the_short_task_id_service_ps_prints():
    from manager.controlapi.api import ControlError
    from manager.controlapi.logs import LogBroker
    from manager.state import LocalProposer, MemoryStore, Store
    from proto import objects_pb2 as pb
    memory = MemoryStore()
    store = Store(memory, LocalProposer(memory), clock=lambda: 1.0)
    service = pb.Service(id="svc1")
    service.spec.annotations.name = "web"

    def fn(tx):
        tx.create(service)
        tx.create(pb.Task(id="abcdefghijk1xxxxxxxxxxxxx", service_id="svc1", slot=1))
        tx.create(pb.Task(id="abcdefghijk2yyyyyyyyyyyyy", service_id="svc1", slot=2))
    await store.update(fn)
    logs = LogBroker(store, dial=None)
    found, tasks = logs._resolve("abcdefghijk1")          # the 12 characters `service ps` prints
    assert found.id == "svc1" and [t.id for t in tasks] == ["abcdefghijk1xxxxxxxxxxxxx"]
    with pytest.raises(ControlError, match="ambiguous"):
        logs._resolve("abcdefghijk")


@pytest.mark.parametrize("args, flag", [
    (["ps", "-f", "status"], "-f, --filter"), (["volume", "ls", "--filter", "status"], "-f, --filter"),
    (["container", "prune", "--filter", "status"], "--filter"), (["system", "prune", "--filter", "status"], "--filter"),
    (["service", "ls", "-f", "status"], "-f, --filter"), (["service", "ps", "-f", "status", "web"], "-f, --filter"),
    (["node", "ls", "-f", "status"], "-f, --filter"), (["network", "ls", "-f", "status"], "-f, --filter"),
    (["secret", "ls", "-f", "status"], "-f, --filter"), (["config", "ls", "-f", "status"], "-f, --filter"),
])
def test_a_filter_without_a_value_is_dockers_usage_error(capsys, args, flag):
    """Every --filter is read by one parser (shoal.cli.output.filter_flags), with the docker CLI's
    words; a key the command does not take is the daemon's, and nothing is asked of a daemon."""
    assert run(args) == USAGE_ERROR
    assert f'invalid argument "status" for "{flag}" flag: bad format of filter (expected name=value)' \
        in capsys.readouterr().err


@pytest.mark.parametrize("args", [["ps", "-f", "bogus=1"], ["volume", "ls", "-f", "bogus=1"],
                                  ["service", "ls", "-f", "bogus=1"], ["node", "ls", "-f", "BOGUS=1"],
                                  ["network", "ls", "-f", "bogus=1"], ["secret", "ls", "-f", "bogus=1"]])
def test_a_filter_key_the_command_does_not_take_is_refused_as_the_daemon_does(capsys, args):
    assert run(args) == 1
    assert capsys.readouterr().err == "Error response from daemon: invalid filter 'bogus'\n"


def test_filter_flags_read_as_dockers_filter_opt():
    from shoal.cli.output import filter_flags
    assert filter_flags(["Label=a=b", " name = web ", "", "label=c", "name="]) == \
        {"label": ["a=b", "c"], "name": ["web", ""]}


def test_label_and_opt_flags_take_the_last_value_of_a_key_as_docker():
    """network/secret/config create --label and network create --opt (docker's
    ConvertKVStringsToMap): before, a repeated key stored its values joined by commas."""
    from shoal.cli.networks import parse_pairs
    assert parse_pairs(["a=1", "a=2", "b", "c=x=y"], "--label") == {"a": "2", "b": "", "c": "x=y"}
