"""shoal swarm init | join | join-token | leave | update | backup, and shoal info."""

from __future__ import annotations

import click

from common.syntax import parse_duration
from shoal.cli.output import flag_value


def register(cli: click.Group) -> None:
    cli.add_command(swarm)
    cli.add_command(info)


@click.group()
def swarm() -> None:
    """Manage the swarm."""


@swarm.command("init")
@click.option("--advertise-addr", default="", help="Advertised address (format: <ip>[:port])")
@click.option("--listen-addr", default="0.0.0.0:2377", show_default=True, help="Listen address (format: <ip>[:port])")
@click.option("--dispatcher-heartbeat", default="5s", show_default=True, help="Dispatcher heartbeat period")
@click.option("--default-addr-pool", multiple=True, help="Default address pool in CIDR format")
@click.option("--default-addr-pool-mask-length", type=int, default=24, show_default=True,
              help="Default address pool subnet mask length")
@click.option("--label", "labels", multiple=True, help="Labels for this node (key=value)")
@click.option("--cert-expiry", default="2160h0m0s", show_default=True,
              help="Validity period for node certificates (ns|us|ms|s|m|h)")
@click.option("--election-tick", type=int, default=10, show_default=True,
              help="Raft ticks (100 ms) without a leader before a manager stands for election")
@click.option("--heartbeat-tick", type=int, default=1, show_default=True,
              help="Raft ticks (100 ms) between the leader's heartbeats")
@click.option("--force-new-cluster", is_flag=True, help="Force create a new cluster from current state")
@click.option("--restore", "restore_file", default="", metavar="FILE",
              help="Start the swarm from a backup made by 'shoal swarm backup'")
@click.option("--autolock", is_flag=True,
              help="Enable manager autolocking (requiring an unlock key to start a stopped manager)")
@click.pass_obj
def swarm_init(client, advertise_addr, listen_addr, dispatcher_heartbeat, default_addr_pool,
               default_addr_pool_mask_length, labels, cert_expiry, election_tick, heartbeat_tick,
               force_new_cluster, restore_file, autolock) -> None:
    """Initialize a swarm with this node as its first manager."""
    from proto import control_pb2
    request = control_pb2.SwarmInitRequest(
        listen_addr=listen_addr, advertise_addr=advertise_addr,
        dispatcher_heartbeat=flag_value(parse_duration, "--dispatcher-heartbeat", dispatcher_heartbeat),
        default_addr_pool=list(default_addr_pool), subnet_size=default_addr_pool_mask_length,
        labels=dict(_kv(label) for label in labels), node_cert_expiry=_cert_expiry(cert_expiry),
        election_tick=_tick("--election-tick", election_tick), heartbeat_tick=_tick("--heartbeat-tick", heartbeat_tick),
        autolock=autolock)
    _recovery_options(request, force_new_cluster, restore_file)
    response = client.call("SwarmInit", request, timeout=60)
    addr = _info(client).remote_managers
    where = addr[0] if addr else "<manager-ip>:2377"
    click.echo(f"Swarm initialized: current node ({response.node_id}) is now a manager.\n")
    click.echo("To add a worker to this swarm, run the following command:\n")
    click.echo(f"    shoal swarm join --token {response.worker_token} {where}\n")
    click.echo("To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.")
    if response.unlock_key:
        click.echo()
        _print_unlock_key(response.unlock_key)


@swarm.command("join")
@click.option("--token", required=True, help="Token for entry into the swarm")
@click.option("--advertise-addr", default="", help="Advertised address (format: <ip>[:port])")
@click.option("--listen-addr", default="0.0.0.0:2377", show_default=True, help="Listen address (format: <ip>[:port])")
@click.option("--availability", default="active", type=click.Choice(["active", "pause", "drain"]),
              show_default=True, help="Availability of the node")
@click.argument("remote_addr")
@click.pass_obj
def swarm_join(client, token, advertise_addr, listen_addr, availability, remote_addr) -> None:
    """Join a swarm as a node and/or manager."""
    from proto import control_pb2, objects_pb2
    response = client.call("SwarmJoin", control_pb2.SwarmJoinRequest(
        remote_addr=remote_addr, join_token=token, listen_addr=listen_addr,
        advertise_addr=advertise_addr, availability=availability), timeout=60)
    role = "manager" if response.role == objects_pb2.MANAGER else "worker"
    click.echo(f"This node joined a swarm as a {role}.")


@swarm.command("join-token")
@click.option("-q", "--quiet", is_flag=True, help="Only display token")
@click.option("--rotate", is_flag=True, help="Rotate join token")
@click.argument("role", type=click.Choice(["worker", "manager"]))
@click.pass_obj
def swarm_join_token(client, quiet, rotate, role) -> None:
    """Manage join tokens."""
    from proto import control_pb2
    if rotate:
        cluster = client.call("GetCluster", control_pb2.GetClusterRequest()).cluster
        client.call("UpdateCluster", control_pb2.UpdateClusterRequest(
            version=cluster.meta.version, spec=cluster.spec,
            rotate_worker_token=role == "worker", rotate_manager_token=role == "manager"))
        if not quiet:
            click.echo(f"Successfully rotated {role} join token.\n")
    cluster = client.call("GetCluster", control_pb2.GetClusterRequest()).cluster
    token = getattr(cluster.root_ca.join_tokens, role)
    if quiet:
        click.echo(token)
        return
    managers = _info(client).remote_managers
    where = managers[0] if managers else "<manager-ip>:2377"
    click.echo(f"To add a {role} to this swarm, run the following command:\n")
    click.echo(f"    shoal swarm join --token {token} {where}\n")


@swarm.command("leave")
@click.option("-f", "--force", is_flag=True, help="Force this node to leave the swarm, ignoring warnings")
@click.pass_obj
def swarm_leave(client, force) -> None:
    """Leave the swarm."""
    from proto import control_pb2
    client.call("SwarmLeave", control_pb2.SwarmLeaveRequest(force=force))
    click.echo("Node left the swarm.")


@swarm.command("update")
@click.option("--dispatcher-heartbeat", default=None, help="Dispatcher heartbeat period (e.g. 5s)")
@click.option("--task-history-limit", type=int, default=None, help="Task history retention limit")
@click.option("--cert-expiry", default=None, help="Validity period for node certificates (ns|us|ms|s|m|h)")
@click.option("--election-tick", type=int, default=None,
              help="Raft ticks (100 ms) without a leader before a manager stands for election")
@click.option("--heartbeat-tick", type=int, default=None, help="Raft ticks (100 ms) between the leader's heartbeats")
@click.option("--autolock", type=click.BOOL, default=None, metavar="BOOL",
              help="Change manager autolocking setting (true|false)")
@click.pass_obj
def swarm_update(client, dispatcher_heartbeat, task_history_limit, cert_expiry, election_tick, heartbeat_tick,
                 autolock) -> None:
    """Update the swarm."""
    from proto import control_pb2
    cluster = client.call("GetCluster", control_pb2.GetClusterRequest()).cluster
    spec = cluster.spec
    if dispatcher_heartbeat is not None:
        spec.dispatcher.heartbeat_period = flag_value(parse_duration, "--dispatcher-heartbeat", dispatcher_heartbeat)
    if task_history_limit is not None:
        spec.orchestration.task_history_retention_limit = task_history_limit
    if cert_expiry is not None:
        spec.ca_config.node_cert_expiry = _cert_expiry(cert_expiry)
    if election_tick is not None:
        spec.raft.election_tick = _tick("--election-tick", election_tick)
    if heartbeat_tick is not None:
        spec.raft.heartbeat_tick = _tick("--heartbeat-tick", heartbeat_tick)
    was_locked = spec.encryption_config.auto_lock_managers
    if autolock is not None:
        spec.encryption_config.auto_lock_managers = autolock
    client.call("UpdateCluster", control_pb2.UpdateClusterRequest(version=cluster.meta.version, spec=spec))
    click.echo("Swarm updated.")
    if autolock and not was_locked:
        key = client.call("GetUnlockKey", control_pb2.GetUnlockKeyRequest()).unlock_key
        _print_unlock_key(key)


def _print_unlock_key(key: str) -> None:
    """Docker's words around an unlock key."""
    click.echo("To unlock a swarm manager after it restarts, run the `shoal swarm unlock`\n"
               "command and provide the following key:\n")
    click.echo(f"    {key}\n")
    click.echo("Please remember to store this key in a password manager, since without it you\n"
               "will not be able to restart the manager.")


@swarm.command("unlock")
@click.pass_obj
def swarm_unlock(client) -> None:
    """Unlock swarm."""
    import sys

    from proto import control_pb2
    if _info(client).local_node_state != "locked":
        raise click.ClickException("swarm is not locked")
    if sys.stdin.isatty():
        key = click.prompt("Please enter unlock key", hide_input=True, prompt_suffix=": ")
    else:
        key = sys.stdin.readline()
    client.call("SwarmUnlock", control_pb2.SwarmUnlockRequest(unlock_key=key.strip()), timeout=60)


@swarm.command("unlock-key")
@click.option("-q", "--quiet", is_flag=True, help="Only display token")
@click.option("--rotate", is_flag=True, help="Rotate unlock key")
@click.pass_obj
def swarm_unlock_key(client, quiet, rotate) -> None:
    """Manage the unlock key."""
    from proto import control_pb2
    if rotate:
        cluster = client.call("GetCluster", control_pb2.GetClusterRequest()).cluster
        if not cluster.spec.encryption_config.auto_lock_managers:
            raise click.ClickException("cannot rotate because autolock is not turned on")
        client.call("UpdateCluster", control_pb2.UpdateClusterRequest(
            version=cluster.meta.version, spec=cluster.spec, rotate_manager_unlock_key=True))
        if not quiet:
            click.echo("Successfully rotated manager unlock key.\n")
    key = client.call("GetUnlockKey", control_pb2.GetUnlockKeyRequest()).unlock_key
    if not key:
        raise click.ClickException("no unlock key is set")
    if quiet:
        click.echo(key)
        return
    _print_unlock_key(key)


@swarm.command("ca")
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False),
              help="Path to the PEM-formatted root CA certificate to use for the new cluster")
@click.option("--ca-key", type=click.Path(exists=True, dir_okay=False),
              help="Path to the PEM-formatted root CA key to use for the new cluster")
@click.option("--cert-expiry", default=None, help="Validity period for node certificates (ns|us|ms|s|m|h)")
@click.option("-d", "--detach", is_flag=True,
              help="Exit immediately instead of waiting for the root rotation to converge")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output")
@click.option("--rotate", is_flag=True,
              help="Rotate the swarm CA - if no certificate or key are provided, new ones will be generated")
@click.pass_obj
def swarm_ca(client, ca_cert, ca_key, cert_expiry, detach, quiet, rotate) -> None:
    """Display and rotate the root CA."""
    import time

    from proto import control_pb2
    if not rotate:
        for flag, value in (("ca-cert", ca_cert), ("ca-key", ca_key), ("cert-expiry", cert_expiry)):
            if value is not None:
                raise click.UsageError(f"`--{flag}` flag requires the `--rotate` flag to update the CA")
        click.echo(client.call("GetCluster", control_pb2.GetClusterRequest()).cluster.root_ca.ca_cert.decode(),
                   nl=False)
        return
    if (ca_cert is None) != (ca_key is None):
        raise click.UsageError("--ca-cert and --ca-key must be given together (external CAs are not supported)")
    cluster = client.call("GetCluster", control_pb2.GetClusterRequest()).cluster
    spec = cluster.spec
    if ca_cert is not None:
        with open(ca_cert, "rb") as f:
            spec.ca_config.signing_ca_cert = f.read()
        with open(ca_key, "rb") as f:
            spec.ca_config.signing_ca_key = f.read()
    else:
        spec.ca_config.force_rotate += 1
    if cert_expiry is not None:
        spec.ca_config.node_cert_expiry = _cert_expiry(cert_expiry)
    client.call("UpdateCluster", control_pb2.UpdateClusterRequest(version=cluster.meta.version, spec=spec))
    if detach:
        return
    last = None
    while True:
        cluster = client.call("GetCluster", control_pb2.GetClusterRequest()).cluster
        nodes = client.call("ListNodes", control_pb2.ListNodesRequest()).nodes
        lines, done = _ca_progress(cluster, nodes)
        if not quiet and lines != last:
            click.echo("\n".join(lines))
            last = lines
        if done:
            break
        time.sleep(0.5)
    click.echo(cluster.root_ca.ca_cert.decode(), nl=False)


def _ca_progress(cluster, nodes) -> tuple[list[str], bool]:
    """Docker's progress of a CA rotation: the desired root's digest and two counters."""
    from manager.ca import rotation
    progress = rotation.progress(cluster, nodes)

    def bar(n: int, total: int, width: int = 50) -> str:
        filled = width * n // total if total else width
        if filled >= width:
            return "[" + "=" * width + "]"
        return "[" + "=" * filled + ">" + " " * (width - filled - 1) + "]"

    import hashlib
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    root = x509.load_pem_x509_certificate(rotation.desired_root(cluster))
    digest = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    phase = f" (rotation in progress: {progress.phase})" if progress.in_progress else ""
    lines = [f"desired root digest: sha256:{digest}{phase}",
             f"  rotated TLS certificates:  {bar(progress.tls_rotated, progress.total)} "
             f"{progress.tls_rotated}/{progress.total} nodes",
             f"  rotated CA certificates:   {bar(progress.ca_rotated, progress.total)} "
             f"{progress.ca_rotated}/{progress.total} nodes"]
    done = (not progress.in_progress and progress.tls_rotated == progress.total
            and progress.ca_rotated == progress.total)
    return lines, done


MIN_CERT_EXPIRY = 3600.0  # Docker's minimum certificate expiry, 1h0m0s


def _tick(flag: str, value: int) -> int:
    if value < 1:
        raise click.BadParameter(f"must be at least 1, not {value}", param_hint=f"'{flag}'")
    return value


def _cert_expiry(text: str) -> float:
    """--cert-expiry: a Go duration of at least one hour, in seconds."""
    seconds = parse_duration(text)
    if seconds < MIN_CERT_EXPIRY:
        raise click.BadParameter(f"minimum certificate expiry time is 1h0m0s (got {text})",
                                 param_hint="'--cert-expiry'")
    return seconds


def _recovery_options(request, force_new_cluster: bool, restore_file: str) -> None:
    """--force-new-cluster and --restore (docs/disaster-recovery.md): the daemon reads the file."""
    import os
    request.force_new_cluster = force_new_cluster
    if restore_file:
        if not os.path.isfile(restore_file):
            raise click.BadParameter(f"{restore_file}: no such file", param_hint="--restore")
        request.restore_file = os.path.abspath(restore_file)


@swarm.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def swarm_backup(client, file) -> None:
    """Write a backup of the swarm's state to FILE (it holds the key to the swarm's secrets)."""
    import os

    from proto import control_pb2
    response = client.call("SwarmBackup", control_pb2.SwarmBackupRequest(path=os.path.abspath(file)), timeout=60)
    counts = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(response.objects.items()))
    click.echo(f"Backup of swarm {response.cluster_id} (store version {response.store_version}: {counts}) "
               f"written to {response.path}.")
    click.echo("It holds the key that opens the swarm's secrets: keep it as safe as a manager's state directory.")
    if not response.confirmed:
        click.echo("Warning: no leader confirmed this manager was up to date; the backup holds its local state.",
                   err=True)


def _info(client):
    from proto import control_pb2
    return client.call("Info", control_pb2.InfoRequest())


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not key:
        raise click.BadParameter(f"invalid label {text!r}: expected key=value")
    return key, value


@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format output using a custom template ('json' or a Go template)")
@click.pass_obj
def info(client, fmt) -> None:
    """Display system-wide information."""
    from proto import control_pb2
    from shoal.cli.formatting import print_objects
    from shoal.cli.system import info_document
    response = client.call("Info", control_pb2.InfoRequest())
    if fmt:
        print_objects(fmt, [info_document(response)], array=False)
        return
    click.echo(f"Server Version: {response.engine_version}")
    click.echo(f"Name: {response.hostname}")
    click.echo(f"Swarm: {response.local_node_state}")
    if response.error:
        click.echo(f" Error: {response.error}")
    if response.node_id:
        click.echo(f" NodeID: {response.node_id}")
        if response.error:
            click.echo(f" Error: {response.error}")
        click.echo(f" Is Manager: {str(response.control_available).lower()}")
        click.echo(f" Node Address: {response.node_addr}")
        if response.control_available:
            click.echo(f" ClusterID: {response.cluster_id}")
            click.echo(f" Managers: {response.managers_count}")
            click.echo(f" Nodes: {response.nodes}")
            click.echo(" Raft:")
            click.echo(f"  Term: {response.raft_term}")
            click.echo(f"  Commit Index: {response.raft_commit_index}")
            click.echo(f"  Leader: {response.leader_addr or '(none)'}")
        click.echo(" Manager Addresses:")
        for addr in response.remote_managers:
            click.echo(f"  {addr}")
