"""shoal swarm client-cert: a client certificate for remote access (docs/remote-access.md).

The key is made here and never leaves this machine: the manager signs a CSR. The files are
Docker's layout, so both ``docker --tlsverify`` and ``shoal --tlsverify`` find them with
DOCKER_CERT_PATH=DIR (or in ~/.docker): ca.pem (the roots the cluster trusts), cert.pem, key.pem
(mode 0600).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from common.syntax import parse_duration
from shoal.cli.output import flag_value

FILES = ("ca.pem", "cert.pem", "key.pem")


def register(cli: click.Group) -> None:
    from shoal.cli.swarm import swarm
    swarm.add_command(client_cert)


@click.command("client-cert")
@click.option("--out", "out", required=True, metavar="DIR",
              help="Directory for ca.pem, cert.pem and key.pem (created if missing; e.g. ~/.docker)")
@click.option("--name", default="shoal-client", show_default=True,
              help="Who the certificate is for (its CN; logged by the daemon on each connection)")
@click.option("--expiry", default="2160h0m0s", show_default=True,
              help="Validity period of the certificate (ns|us|ms|s|m|h), at least 1h")
@click.option("-f", "--force", is_flag=True, help="Replace ca.pem, cert.pem and key.pem if DIR has them")
@click.pass_obj
def client_cert(client, out: str, name: str, expiry: str, force: bool) -> None:
    """Issue a client certificate for remote access (-H tcp://MANAGER:2376 --tlsverify)."""
    from manager.ca import make_node_key_and_csr
    from proto import control_pb2
    seconds = flag_value(parse_duration, "--expiry", expiry)
    if seconds < 3600:
        raise click.UsageError(f"invalid --expiry {expiry!r}: the minimum is 1h")
    directory = Path(out).expanduser()
    if directory.exists() and not directory.is_dir():
        raise click.UsageError(f"--out {out!r} is not a directory")
    present = [f for f in FILES if (directory / f).exists()]
    if present and not force:
        raise click.ClickException(f"{directory} already has {', '.join(present)}: use --force to replace them")
    key, csr = make_node_key_and_csr()
    response = client.call("IssueClientCertificate", control_pb2.IssueClientCertificateRequest(
        csr=csr, name=name, expiry_seconds=int(seconds)))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for filename, data, mode in (("key.pem", key, 0o600), ("cert.pem", response.certificate, 0o644),
                                 ("ca.pem", response.root_ca, 0o644)):
        path = directory / filename
        temporary = path.with_name(f".{filename}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    click.echo(f"Client certificate {name!r} written to {directory} (ca.pem, cert.pem, key.pem).")
    click.echo(f"Use it with: DOCKER_CERT_PATH={directory} DOCKER_TLS_VERIFY=1 DOCKER_HOST=tcp://MANAGER-IP:2376")
