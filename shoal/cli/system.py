"""`shoal version` and the Docker-shaped documents `info` and `version` show to `--format`.

    info_document(InfoResponse) -> dict      docker's system info shape: Name, ServerVersion, Swarm{...}
    version_document(server_version) -> dict docker's version shape: Client{...}, Server{...}

Only fields Shoal knows are present, so a template asking for one it does not know (.NCPU, say)
fails naming it instead of printing a guess.
"""

from __future__ import annotations

import platform
import sys

import click

from shoal import __version__
from shoal.cli.formatting import print_objects

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}


def register(cli: click.Group) -> None:
    cli.add_command(version)
    cli.add_command(system)
    system.add_command(cli.commands["info"])     # docker system info = docker info


@click.group()
def system() -> None:
    """Manage Shoal: disk usage, pruning, events, info."""


def info_document(info) -> dict:
    """`docker info --format '{{json .}}'`'s shape for what shoald reports, plus Shoal's own
    InfoResponse fields in camelCase (they never collide with Docker's PascalCase names)."""
    swarm = {"NodeID": info.node_id, "NodeAddr": info.node_addr, "LocalNodeState": info.local_node_state,
             "ControlAvailable": info.control_available, "Error": info.error,
             "RemoteManagers": ([{"NodeID": m.node_id, "Addr": m.raft_addr} for m in info.managers]
                                or [{"NodeID": "", "Addr": addr} for addr in info.remote_managers])}
    if info.control_available:
        swarm.update({"Nodes": info.nodes, "Managers": info.managers_count, "Cluster": {"ID": info.cluster_id}})
    from google.protobuf import json_format
    # Shoal's own fields (camelCase: leaderAddr, raftTerm, managers, error, ...) stay beside
    # Docker's, for the scripts written against them.
    extra = json_format.MessageToDict(info, preserving_proto_field_name=False)
    return {"ID": info.node_id, "Name": info.hostname, "ServerVersion": info.engine_version,
            "OSType": "linux", "Swarm": swarm, **extra}


def _platform() -> dict:
    return {"Os": sys.platform if sys.platform != "linux2" else "linux",
            "Arch": _GOARCH.get(platform.machine(), platform.machine())}


def version_document(server_version: str | None) -> dict:
    out = {"Client": {"Platform": {"Name": "Shoal"}, "Version": __version__, **_platform()}}
    if server_version is not None:
        out["Server"] = {"Platform": {"Name": "Shoal"}, "Version": server_version,
                         "Components": [{"Name": "Engine", "Version": server_version}]}
    return out


@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format output using a custom template ('json' or a Go template)")
@click.pass_obj
def version(client, fmt) -> None:
    """Show the Shoal version information."""
    from proto import control_pb2
    info = client.call("Info", control_pb2.InfoRequest())
    if fmt:
        print_objects(fmt, [version_document(info.engine_version)], array=False)
        return
    click.echo(f"Client: shoal {__version__}")
    click.echo(f"Server: shoald {info.engine_version}")
