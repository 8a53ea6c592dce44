"""The click-free `shoal run` (shoal.cli.run_fast) asks runtimed for exactly the ContainerSpec the
click command builds, for every command line it takes, and leaves every other one to click."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime.spec import ContainerSpec
from shoal.cli import main, run_fast

IMG = "shoal/busybox:latest"


def click_spec(monkeypatch, args: list[str]):
    """What the click command hands to execute for `shoal run ARGS` (None: it did not get there)."""
    seen = []

    def execute(client, spec, remove, detach, started=None):
        seen.append((spec.to_json(), remove, detach))

    monkeypatch.setattr(run_fast, "execute", execute)
    main.run(["run", *args])
    return seen[0] if seen else None


def fast_spec(args: list[str]):
    """The spec runtimed makes of the fast path's create call (every field it leaves out at its
    default), as JSON."""
    params = run_fast.parse(args)
    if params is None:
        return None
    spec = ContainerSpec.from_json(run_fast.spec_json(params))
    return spec.to_json(), params["remove"], params["detach"]


TAKEN = [
    [IMG],
    [IMG, "true"],
    ["--rm", IMG, "true"],
    ["-d", IMG, "sleep", "5"],
    ["--rm", "-d", "--detach", IMG, "sleep", "5"],
    ["--name", "web", "--rm", IMG, "sh", "-c", "echo $A; exit 3"],
    ["--name=web", "-e", "A=1", "--env", "B=2", "--env=C", "-l", "x=y", "--label=z", IMG],
    ["--init", "--privileged", "--read-only", IMG, "ls", "-l", "--rm"],
    ["-u", "app", "--user", "1000:1000", "-w", "/tmp", "--workdir=/", "-h", "box", "--hostname=h2", IMG],
    ["--entrypoint", "/bin/sh", "--stop-signal", "SIGINT", IMG, "-c", "true"],
    ["--entrypoint=", IMG],
    ["--network", "none", IMG],
    ["--network=host", IMG, "--network", "x"],
    ["-e", "A=", "-l", "k", IMG, "-"],
]

LEFT_TO_CLICK = [
    [], ["--rm"], ["--help"], ["--rm", "--help"], ["-it", IMG], ["-i", IMG], ["-t", IMG], ["-p", "80:80", IMG],
    ["--rm=true", IMG], ["--rm=false", IMG], ["-dit", IMG], ["--", IMG], ["--network", "mynet", IMG],
    ["--network", "/run/netns/x", IMG], ["-e=A", IMG], ["-eA=1", IMG], ["--name"], ["--name", "--rm", IMG],
    ["--cpus", "1", IMG], ["-v", "/a:/b", IMG], ["--restart", "always", IMG], ["-", IMG], ["--nam", "x", IMG],
]


@pytest.mark.parametrize("args", TAKEN, ids=" ".join)
def test_the_fast_path_builds_the_click_commands_spec(monkeypatch, args):
    fast = fast_spec(args)
    assert fast is not None
    assert fast == click_spec(monkeypatch, args)


@pytest.mark.parametrize("args", LEFT_TO_CLICK, ids=" ".join)
def test_other_command_lines_are_left_to_click(args):
    assert run_fast.parse(args) is None


TOKENS = ["--rm", "-d", "--detach", "--init", "--privileged", "--read-only", "--name", "--name=n", "-e", "--env=A=1",
          "-l", "--label=k=v", "-u", "-w", "-h", "--entrypoint", "--entrypoint=", "--stop-signal", "--network",
          "--network=host", "--network=none", "none", "host", "A=1", "x", IMG, "true", "-", "--", "-i", "-t", "-it",
          "--rm=true", "-e=X", "--help", "--cpus", "1", "sh", "-c"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=8))
def test_any_command_line_is_taken_as_click_takes_it_or_left_to_click(args):
    fast = fast_spec(args)
    if fast is not None:
        with pytest.MonkeyPatch.context() as monkeypatch:
            assert fast == click_spec(monkeypatch, args)


@pytest.mark.parametrize("env", [{"SHOAL_HOST": "tcp://manager1:2376"}, {"DOCKER_HOST": "tcp://manager1:2376"}])
def test_a_remote_host_is_left_to_click(monkeypatch, env):
    for name in ("SHOAL_RUNTIME_HOST", "SHOAL_HOST", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run_fast.main(["run", IMG, "true"]) is None      # returned: click refuses it with its message
