"""The lab's image registry: Debian's `docker-registry` (distribution 2.8) in the underlay namespace.

It listens on the underlay bridge's address, port 5000, plain HTTP, so every host of the lab
reaches it at `LabPlan.registry`; its blobs live in `<lab>/registry/data`. The project's busybox
demo image, when `deploy/images/build_busybox.py` exists, is built once and pushed there as
`REGISTRY/shoal/busybox:latest`.
"""
from __future__ import annotations

import http.client
import logging
import subprocess
import sys
import time
from pathlib import Path

import yaml

from shoal.lab import procs
from shoal.lab.errors import LabError
from shoal.lab.netns import run_in_netns
from shoal.lab.plan import REGISTRY_PORT, LabPlan
from shoal.lab.store import ProcessRecord

logger = logging.getLogger(__name__)

REGISTRY_PROGRAM = "docker-registry"
BUSYBOX_REPOSITORY = "shoal/busybox:latest"
BUSYBOX_BUILDER = Path(__file__).resolve().parents[2] / "deploy" / "images" / "build_busybox.py"


def write_config(plan: LabPlan) -> Path:
    """Write the registry's config file under the lab directory and return its path."""
    data_dir = plan.registry_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(data_dir)},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"{plan.bridge_address}:{REGISTRY_PORT}"},
    }
    path = plan.registry_dir / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start(plan: LabPlan) -> ProcessRecord:
    """Start the registry in the underlay namespace; returns its process record."""
    config = write_config(plan)
    return procs.start(
        [procs.program(REGISTRY_PROGRAM), "serve", str(config)],
        netns=plan.underlay_netns,
        log_path=plan.registry_dir / "registry.log",
    )


def api_status(plan: LabPlan, timeout: float = 2.0) -> int:
    """HTTP status of `GET /v2/` on the lab registry, asked from inside the underlay namespace.
    Raises OSError if it does not answer."""

    def get() -> int:
        conn = http.client.HTTPConnection(str(plan.bridge_address), REGISTRY_PORT, timeout=timeout)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status
        finally:
            conn.close()

    return run_in_netns(plan.underlay_netns, get)


def wait_ready(plan: LabPlan, record: ProcessRecord, timeout: float = 30.0) -> None:
    """Wait until the registry answers /v2/ with 200; LabError (with its log) if it dies or does not."""
    log = plan.registry_dir / "registry.log"
    deadline = time.monotonic() + timeout
    while True:
        if not procs.is_running(record):
            raise LabError(f"lab {plan.name}: registry exited; {log}:\n{procs.log_tail(log)}")
        try:
            if api_status(plan) == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LabError(f"lab {plan.name}: registry at {plan.registry} did not answer within "
                           f"{timeout:.0f} s; {log}:\n{procs.log_tail(log)}")
        time.sleep(0.1)


def push_busybox(plan: LabPlan, timeout: float = 120.0) -> str:
    """Build the project's busybox image and push it to the lab registry; return the reference pushed."""
    ref = f"{plan.registry}/{BUSYBOX_REPOSITORY}"
    layout = plan.registry_dir / "busybox-layout"
    # The builder's own command line builds the OCI layout and pushes it over plain HTTP; it runs
    # in the underlay namespace, the only place (besides the hosts) that reaches the registry.
    argv = procs.in_netns(
        plan.underlay_netns,
        [sys.executable, str(BUSYBOX_BUILDER), str(layout), "--force", "--push", ref],
    )
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabError(f"lab {plan.name}: pushing {ref} failed: {(proc.stderr or proc.stdout).strip()}")
    return ref
