"""Merge an image's OCI config with a container spec, the way ``docker run`` does. Pure.

Rules (Docker's): a spec entrypoint (even an empty list) replaces the image's and drops the image's
Cmd; otherwise the spec command replaces the image Cmd. Env merges by name, the spec winning, and
PATH gets Docker's default when neither sets it. WorkingDir, User, StopSignal and Healthcheck come
from the spec when set, else from the image.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_runtime.errors import InvalidArgument
from agent_runtime.spec import ContainerSpec, Healthcheck

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NS = 1_000_000_000


@dataclass
class ProcessConfig:
    """What init.py runs: resolved argv, env, workdir, user, and the stop signal to use."""

    args: list[str]
    env: list[str]
    cwd: str
    user: str
    hostname: str
    stop_signal: str
    healthcheck: Healthcheck | None


def merge_env(image_env: list[str], spec_env: list[str]) -> list[str]:
    merged: dict[str, str] = {}
    for entry in list(image_env) + list(spec_env):
        key, _, value = entry.partition("=")
        merged.pop(key, None)
        merged[key] = value
    env = [f"{k}={v}" for k, v in merged.items()]
    if "PATH" not in merged:
        env.insert(0, DEFAULT_PATH)
    return env


def image_healthcheck(config: dict) -> Healthcheck | None:
    hc = config.get("Healthcheck") or {}
    test = hc.get("Test") or []
    if not test or test == ["NONE"]:
        return None
    return Healthcheck(test=list(test), interval_s=hc.get("Interval", 30 * NS) / NS,
                       timeout_s=hc.get("Timeout", 30 * NS) / NS, retries=hc.get("Retries", 3),
                       start_period_s=hc.get("StartPeriod", 0) / NS,
                       start_interval_s=hc.get("StartInterval", 0) / NS)


def merge_process(spec: ContainerSpec, image_config: dict, container_id: str) -> ProcessConfig:
    """The process a container runs; InvalidArgument when neither spec nor image names a command."""
    config = image_config.get("config", image_config) or {}
    if spec.entrypoint is not None:
        entrypoint, cmd = list(spec.entrypoint), list(spec.command)
    else:
        entrypoint = list(config.get("Entrypoint") or [])
        cmd = list(spec.command) or list(config.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidArgument(f"create container from {spec.image or spec.rootfs}: no command specified")
    healthcheck = spec.healthcheck if spec.healthcheck is not None else image_healthcheck(config)
    return ProcessConfig(
        args=args,
        env=merge_env(list(config.get("Env") or []), spec.env),
        cwd=spec.workdir or config.get("WorkingDir") or "/",
        user=spec.user or config.get("User") or "",
        hostname=spec.hostname or container_id[:12],
        stop_signal=spec.stop_signal or config.get("StopSignal") or "SIGTERM",
        healthcheck=healthcheck,
    )
