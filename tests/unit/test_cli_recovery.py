"""shoal swarm init --force-new-cluster / --restore and shoal swarm backup: what the CLI sends and prints."""

from __future__ import annotations

from click.testing import CliRunner

from proto import control_pb2
from shoal.cli import swarm as cli_swarm


class RecordingClient:
    """Answers the swarm calls; records (method, request)."""
    host = "unix:///fake.sock"
    timeout = 5.0

    def __init__(self, confirmed: bool = True):
        self.calls = []
        self.confirmed = confirmed

    def call(self, method, request, timeout=None):
        self.calls.append((method, request))
        if method == "SwarmInit":
            return control_pb2.SwarmInitResponse(node_id="n1", worker_token="SWMTKN-w", manager_token="SWMTKN-m")
        if method == "Info":
            return control_pb2.InfoResponse(remote_managers=["192.0.2.11:2377"])
        if method == "SwarmBackup":
            return control_pb2.SwarmBackupResponse(path=request.path, cluster_id="c1", store_version=42,
                                                   objects={"service": 2, "secret": 1}, confirmed=self.confirmed)
        raise AssertionError(method)


def run(client, *args):
    return CliRunner().invoke(cli_swarm.swarm, list(args), obj=client)


def test_force_new_cluster_is_sent_with_the_advertise_address():
    client = RecordingClient()
    result = run(client, "init", "--force-new-cluster", "--advertise-addr", "192.0.2.13")
    assert result.exit_code == 0, result.output
    method, request = client.calls[0]
    assert method == "SwarmInit" and request.force_new_cluster and request.advertise_addr == "192.0.2.13"
    assert not request.restore_file
    assert "is now a manager" in result.output


def test_restore_sends_an_absolute_path_and_a_missing_file_sends_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "swarm.bak").write_bytes(b"x")
    client = RecordingClient()
    assert run(client, "init", "--restore", "swarm.bak").exit_code == 0
    assert client.calls[0][1].restore_file == str(tmp_path / "swarm.bak")
    missing = RecordingClient()
    result = run(missing, "init", "--restore", "nope.bak")
    assert result.exit_code == 2 and "nope.bak: no such file" in result.stderr
    assert missing.calls == []


def test_backup_reports_what_it_wrote_and_warns_when_unconfirmed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = RecordingClient()
    result = run(client, "backup", "swarm.bak")
    assert result.exit_code == 0
    assert client.calls[0][1].path == str(tmp_path / "swarm.bak")
    assert "Backup of swarm c1 (store version 42: 1 secret, 2 services)" in result.output
    assert "keep it as safe" in result.stdout and result.stderr == ""
    unconfirmed = run(RecordingClient(confirmed=False), "backup", "swarm.bak")
    assert "no leader confirmed" in unconfirmed.stderr
