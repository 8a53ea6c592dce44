"""Prune and df as Docker prints them: prompts, filters, the rows of `system df`, and the
runtime's filter rules (agent_runtime/prune.py, moby's prune filters)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from agent_runtime.errors import InvalidArgument
from agent_runtime.prune import all_volumes, dir_size, labels_match, parse_filters, until
from shoal.cli import main
from shoal.cli.prune import df_rows, human_size, system_warning


def test_system_prune_warning_is_dockers_template():
    assert system_warning(False, False, {}) == (
        "WARNING! This will remove:\n  - all stopped containers\n"
        "  - all networks not used by at least one container\n  - all dangling images\n\n"
        "Are you sure you want to continue?")
    assert system_warning(True, True, {"label": ["a=1"], "until": ["24h"]}) == (
        "WARNING! This will remove:\n  - all stopped containers\n"
        "  - all networks not used by at least one container\n"
        "  - all anonymous volumes not used by at least one container\n"
        "  - all images without at least one container associated to them\n\n"
        "  Items to be pruned will be filtered with:\n  - label=a=1\n  - until=24h\n\n"
        "Are you sure you want to continue?")


@pytest.mark.parametrize("size,text", [(0, "0B"), (212, "212B"), (16_430_000, "16.43MB"), (1_500_000_000, "1.5GB")])
def test_human_size_is_go_units(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize("args,warning", [
    (["container", "prune"], "WARNING! This will remove all stopped containers.\n"),
    (["volume", "prune"], "WARNING! This will remove anonymous local volumes not used by at least one container.\n"),
    (["volume", "prune", "-a"], "WARNING! This will remove all local volumes not used by at least one container.\n"),
    (["network", "prune"], "WARNING! This will remove all custom networks not used by at least one container.\n"),
    (["system", "prune"], "WARNING! This will remove:\n"),
])
def test_declining_the_prompt_changes_nothing_and_exits_0(args, warning, monkeypatch):
    """No daemon here: any call would fail, so exit 0 shows none was made."""
    monkeypatch.setenv("SHOAL_RUNTIME_HOST", "/nonexistent/runtimed.sock")
    result = CliRunner().invoke(main.cli, ["-H", "unix:///nonexistent/shoal.sock", *args], input="n\n")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(warning) and result.output.endswith("Are you sure you want to continue? [y/N] ")


def test_volume_prune_all_conflicts_with_the_all_filter(monkeypatch):
    assert main.run(["volume", "prune", "-a", "--filter", "all=1", "-f"]) == 125


def test_runtime_filters_are_mobys():
    assert parse_filters({"label": ["a"], "until": {"10m": True}}, ("label", "until")) == {"label": ["a"],
                                                                                        "until": ["10m"]}
    with pytest.raises(InvalidArgument, match="^invalid filter 'bogus'$"):
        parse_filters({"bogus": ["1"]}, ("label",))
    labels = {"app": "web", "tier": "front"}
    assert labels_match(labels, {"label": ["app", "tier=front"]})
    assert not labels_match(labels, {"label": ["app=db"]})
    assert not labels_match(labels, {"label!": ["tier"]}) and labels_match(labels, {"label!": ["tier=back"]})
    assert until({"until": ["10m"]}, 1000.0) == 400.0 and until({}, 1.0) is None
    with pytest.raises(InvalidArgument, match="more than one until filter"):
        until({"until": ["1m", "2m"]}, 0.0)
    assert all_volumes({"all": ["true"]}) and not all_volumes({"all": ["0"]}) and not all_volumes({})
    with pytest.raises(InvalidArgument, match="invalid filter 'all=maybe'"):
        all_volumes({"all": ["maybe"]})


def test_dir_size_counts_files_once(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 50)
    (tmp_path / "hard").hardlink_to(tmp_path / "a")
    (tmp_path / "link").symlink_to("/etc/passwd")
    assert dir_size(tmp_path) == 150 + len("/etc/passwd")


def test_system_df_rows_are_docker_clis():
    usage = {"LayersSize": 1000,
             "Images": [{"Size": 600, "SharedSize": 100, "Containers": 1}, {"Size": 500, "SharedSize": 100,
                                                                             "Containers": 0}],
             "Containers": [{"State": {"Status": "running"}, "SizeRw": 10},
                            {"State": {"Status": "exited"}, "SizeRw": 30}],
             "Volumes": [{"UsageData": {"Size": 36, "RefCount": 1}}, {"UsageData": {"Size": 0, "RefCount": 0}}]}
    rows = df_rows(usage)
    assert [list(r.values()) for r in rows] == [
        ["Images", "2", "1", "1kB", "500B (50%)"],
        ["Containers", "2", "1", "40B", "30B (75%)"],
        ["Local Volumes", "2", "1", "36B", "0B (0%)"],
        ["Build Cache", "0", "0", "0B", "0B"]]
