"""What `shoal stack deploy` must do: a pure plan from the stack's specs and the cluster's objects.

    plan_deploy(stack, name, cluster, normalize, prune=False) -> DeployPlan   or DeployError (nothing to do)
    dependency_state(service, tasks, condition) -> DependencyState             is a depends_on target up?

The plan says which secrets, configs and networks to create, which services to create, update or
leave alone (in `depends_on` order) and which to remove with `--prune`. Every check that can fail
runs here, before the command writes anything: external networks, secrets and configs must
exist; objects named like the stack's must belong to it; a secret or config whose content changed
is refused (they are immutable, as in Docker); a service spec the ControlAPI would refuse, or an
ingress port another service holds, is reported with the file and line of its definition.

"Unchanged" is decided on the spec the ControlAPI would store, which `normalize` asks the
ControlAPI for (its NormalizeServiceSpec call: names resolved to IDs, file defaults, ingress ports
keeping their numbers; refused as UpdateService would refuse it). The planner has no copy of
those rules. So redeploying the same files calls no UpdateService at all.

Secrets never leave the cluster, so the content of a stack's secret is compared through a label
the deploy writes when it creates one: a salted scrypt digest (configs get a plain SHA-256).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from manager.controlapi.service_spec import SpecError, validate_spec
from proto import objects_pb2 as pb
from shoal.stack.convert import (
    NAMESPACE_LABEL, external_names, to_config_specs, to_network_specs, to_secret_specs, to_service_specs,
)
from shoal.stack.errors import StackError
from shoal.stack.model import StackSpec

DIGEST_LABEL = "com.shoal.stack.digest"
FAILURE_LIMIT = 3                 # a dependency whose tasks failed this often is not coming up
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}
_JOBS = (pb.ServiceSpec.REPLICATED_JOB, pb.ServiceSpec.GLOBAL_JOB)


class DeployError(StackError):
    """The stack cannot be deployed as it is; `problems` lists every reason. Nothing was changed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class ClusterState:
    """The cluster's objects as the ControlAPI lists them. `secrets`/`configs` are None when they
    were not listed (the stack uses none, or the cluster does not offer them)."""

    services: list[pb.Service]
    networks: list[pb.Network]
    secrets: list[pb.Secret] | None = None
    configs: list[pb.Config] | None = None


@dataclass(frozen=True)
class ServiceStep:
    """One service of the stack: `action` is "create", "update" or "unchanged". `spec` is what
    to send (normalized against `current` for an update); `changes` names the fields that differ;
    `depends_on` holds (service full name, condition) pairs to wait for before creating or updating."""

    name: str
    action: str
    spec: pb.ServiceSpec
    current: pb.Service | None = None
    changes: tuple[str, ...] = ()
    depends_on: tuple[tuple[str, str], ...] = ()


@dataclass
class DeployPlan:
    stack: str
    secrets: list[pb.SecretSpec] = field(default_factory=list)     # to create (digest label set)
    configs: list[pb.ConfigSpec] = field(default_factory=list)
    networks: list[pb.NetworkSpec] = field(default_factory=list)
    services: list[ServiceStep] = field(default_factory=list)      # deploy order
    prune: list[pb.Service] = field(default_factory=list)          # to remove (--prune)
    warnings: list[str] = field(default_factory=list)

    @property
    def changes_anything(self) -> bool:
        return bool(self.secrets or self.configs or self.networks or self.prune
                    or any(s.action != "unchanged" for s in self.services))


# ---- digests of secret and config contents ---------------------------------------------------

def data_digest(data: bytes, secret: bool, salt: bytes | None = None) -> str:
    """The label value recording `data`: "scrypt:SALT:HASH" for a secret (a salted, slow hash: a
    label is readable by anyone who can list secrets), "sha256:HASH" for a config."""
    if not secret:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    salt = os.urandom(16) if salt is None else salt
    return f"scrypt:{salt.hex()}:{hashlib.scrypt(data, salt=salt, **_SCRYPT).hex()}"


def digest_matches(data: bytes, label: str) -> bool | None:
    """Whether `label` (from data_digest) records `data`; None if it is not a digest we wrote."""
    kind, _, rest = label.partition(":")
    if kind == "sha256" and rest:
        return hmac.compare_digest(rest, hashlib.sha256(data).hexdigest())
    if kind == "scrypt":
        salt_hex, _, hashed = rest.partition(":")
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            return None
        if not salt or not hashed:
            return None
        return hmac.compare_digest(hashed, hashlib.scrypt(data, salt=salt, **_SCRYPT).hex())
    return None


# ---- service specs as the ControlAPI stores them ---------------------------------------------

Normalizer = Callable[[pb.ServiceSpec, pb.Service, tuple[str, ...]], pb.ServiceSpec]
"""(spec, the service it replaces, IDs of services removed first) -> the spec the ControlAPI would
store (its NormalizeServiceSpec call); raises SpecError with the ControlAPI's message if refused."""


def _references(spec: pb.ServiceSpec) -> set[str]:
    container = spec.task.container
    return ({a.target for a in spec.task.networks} | {r.secret_name for r in container.secrets}
            | {r.config_name for r in container.configs})


def spec_changes(old: pb.ServiceSpec, new: pb.ServiceSpec) -> tuple[str, ...]:
    """The fields that differ, named as a user reads them ("image", "env", "replicas", ...)."""
    changes = []
    old_container, new_container = old.task.container, new.task.container
    for field_descriptor in pb.ContainerSpec.DESCRIPTOR.fields:
        name = field_descriptor.name
        if getattr(old_container, name) != getattr(new_container, name):
            changes.append(name)
    for name in ("resources", "restart", "placement", "networks", "force_update"):
        if getattr(old.task, name) != getattr(new.task, name):
            changes.append(name)
    for name in ("annotations", "mode", "replicas", "update", "rollback", "endpoint"):
        if getattr(old, name) != getattr(new, name):
            changes.append("labels" if name == "annotations" else name)
    if not changes and old != new:
        changes.append("spec")
    return tuple(changes)


# ---- the plan --------------------------------------------------------------------------------

def _stack_of(labels) -> str | None:
    return labels.get(NAMESPACE_LABEL)


def plan_deploy(stack: StackSpec, name: str, cluster: ClusterState, normalize: Normalizer,
                prune: bool = False, salt: bytes | None = None) -> DeployPlan:
    """What to do to make the cluster run `stack` as the stack `name`. Pure but for `normalize`
    (a read-only query) and drawing a random salt when `salt` is None. Raises DeployError
    listing every problem found."""
    problems: list[str] = []
    plan = DeployPlan(stack=name)
    where = {f"{name}_{s.name}": s.where for s in stack.services.values()}

    # external objects must exist
    externals = external_names(stack)
    network_names = {n.spec.annotations.name for n in cluster.networks} | {n.id for n in cluster.networks}
    for external in externals["networks"]:
        if external not in network_names:
            problems.append(f"network {external} is declared as external, but could not be found; "
                            f"create it first (shoal network create --driver overlay {external})")
    for kind, listed in (("secrets", cluster.secrets), ("configs", cluster.configs)):
        known = {o.spec.annotations.name for o in listed or []} | {o.id for o in listed or []}
        for external in externals[kind]:
            if listed is None:
                problems.append(f"{kind[:-1]} {external} is declared as external, but this cluster "
                                f"does not offer {kind}")
            elif external not in known:
                problems.append(f"{kind[:-1]} {external} is declared as external, but could not be found")

    # networks: create the missing ones; same-named objects must be the stack's
    current_networks = {n.spec.annotations.name: n for n in cluster.networks}
    for spec in to_network_specs(stack, name):
        existing = current_networks.get(spec.annotations.name)
        if existing is None:
            plan.networks.append(spec)
        elif _stack_of(existing.spec.annotations.labels) != name:
            problems.append(f"network {spec.annotations.name} already exists and is not part of stack "
                            f"{name}; remove or rename it")
        elif (existing.spec.driver, dict(existing.spec.driver_opts), existing.spec.internal,
              existing.spec.attachable) != (spec.driver, dict(spec.driver_opts), spec.internal, spec.attachable):
            plan.warnings.append(f"network {spec.annotations.name} exists with other settings; it is "
                                 f"kept as it is (networks are not updated: remove the stack to recreate it)")

    # secrets and configs: immutable; create the missing ones, refuse changed contents
    for kind, specs, listed in (("secret", to_secret_specs(stack, name), cluster.secrets),
                                ("config", to_config_specs(stack, name), cluster.configs)):
        if specs and listed is None:
            problems.append(f"the stack declares {kind}s ({', '.join(s.annotations.name for s in specs)}), "
                            f"but this cluster does not offer {kind}s")
            continue
        current = {o.spec.annotations.name: o for o in listed or []}
        for spec in specs:
            existing = current.get(spec.annotations.name)
            if existing is None:
                spec.annotations.labels[DIGEST_LABEL] = data_digest(spec.data, kind == "secret", salt)
                (plan.secrets if kind == "secret" else plan.configs).append(spec)
                continue
            if _stack_of(existing.spec.annotations.labels) != name:
                problems.append(f"{kind} {spec.annotations.name} already exists and is not part of stack "
                                f"{name}; remove or rename it")
                continue
            same = _same_content(existing, spec.data)
            if same is False:
                problems.append(f"{kind} {spec.annotations.name}: its content in the stack files differs from "
                                f"the {kind} in the cluster, and {kind}s cannot be changed; give it a new "
                                f"name in the stack file (name: {spec.annotations.name}_v2) or remove the "
                                f"stack first (shoal stack rm {name})")
            elif same is None:
                plan.warnings.append(f"{kind} {spec.annotations.name} was not created by `stack deploy`; "
                                     f"its content cannot be compared and it is kept as it is")

    # services
    current_services = {s.spec.annotations.name: s for s in cluster.services}
    desired = to_service_specs(stack, name)
    desired_names = {s.annotations.name for s in desired}
    for service in cluster.services:
        if _stack_of(service.spec.annotations.labels) == name and service.spec.annotations.name not in desired_names:
            if prune:
                plan.prune.append(service)
            else:
                plan.warnings.append(f"service {service.spec.annotations.name} is part of stack {name} but not "
                                     f"of its files; it is kept (use --prune to remove it)")
    pruned = {s.id for s in plan.prune}
    problems.extend(_port_conflicts(desired, cluster.services, desired_names, pruned, where))
    short = {s.name: f"{name}_{s.name}" for s in stack.services.values()}
    created = {s.annotations.name for s in plan.networks + plan.secrets + plan.configs}
    for spec in desired:
        full = spec.annotations.name
        try:
            validate_spec(spec)
        except SpecError as err:
            problems.append(f"{where.get(full, full)}: {err}")
            continue
        definition = stack.services[full[len(name) + 1:]]
        depends = tuple((short[d.service], d.condition) for d in definition.depends_on if d.service in short)
        existing = current_services.get(full)
        if existing is None:
            plan.services.append(ServiceStep(full, "create", spec, depends_on=depends))
            continue
        if _stack_of(existing.spec.annotations.labels) != name:
            problems.append(f"service {full} already exists and is not part of stack {name}; remove or rename it")
            continue
        if _references(spec) & created:
            # It refers to a network, secret or config this deploy creates: it changes, and the
            # ControlAPI resolves the new names when the update is sent.
            plan.services.append(ServiceStep(full, "update", spec, existing,
                                             spec_changes(existing.spec, spec), depends))
            continue
        try:
            wanted = normalize(spec, existing, tuple(sorted(pruned)))
        except SpecError as err:
            problems.append(f"{where.get(full, full)}: {err}")
            continue
        if wanted == existing.spec:
            plan.services.append(ServiceStep(full, "unchanged", wanted, existing, depends_on=depends))
        else:
            plan.services.append(ServiceStep(full, "update", wanted, existing,
                                             spec_changes(existing.spec, wanted), depends))
    if problems:
        raise DeployError(problems)
    return plan


def _same_content(existing: pb.Secret | pb.Config, data: bytes) -> bool | None:
    if existing.spec.data:
        return hmac.compare_digest(existing.spec.data, data)
    label = existing.spec.annotations.labels.get(DIGEST_LABEL)
    return None if label is None else digest_matches(data, label)


def _port_conflicts(desired: list[pb.ServiceSpec], services: list[pb.Service], names: set[str],
                    pruned: set[str], where: dict[str, str]) -> list[str]:
    """Ingress ports of the stack's services that another service (outside the files, not pruned)
    already publishes."""
    held: dict[tuple[int, int], str] = {}
    for service in services:
        if service.spec.annotations.name in names or service.id in pruned:
            continue
        for port in service.spec.endpoint.ports:
            if port.publish_mode == pb.PortConfig.INGRESS and port.published_port:
                held[(port.published_port, port.protocol)] = service.spec.annotations.name
    problems = []
    for spec in desired:
        for port in spec.endpoint.ports:
            owner = held.get((port.published_port, port.protocol))
            if port.publish_mode == pb.PortConfig.INGRESS and port.published_port and owner:
                protocol = "udp" if port.protocol == pb.PortConfig.UDP else "tcp"
                full = spec.annotations.name
                problems.append(f"{where.get(full, full)}: service {full}: port {port.published_port}/{protocol} "
                                f"is already published by service {owner}")
    return problems


# ---- depends_on: is a dependency up? ---------------------------------------------------------

@dataclass(frozen=True)
class DependencyState:
    ready: bool
    detail: str                      # what it is doing, for progress and timeout messages
    failed: str | None = None        # why it will not come up by itself


def dependency_state(service: pb.Service | None, tasks: list[pb.Task], condition: str) -> DependencyState:
    """Whether the dependency `service` is up for a dependent to start: a task of its current spec
    running (a task with a health check is RUNNING only once healthy), or, for a job or the
    condition "service_completed_successfully", its tasks completed. Pure."""
    if service is None:
        return DependencyState(False, "not created", "the service does not exist")
    current = [t for t in tasks if t.service_id == service.id and t.spec_version == service.spec_version]
    failures = sorted((t for t in current if t.status.state in (pb.FAILED, pb.REJECTED)),
                      key=lambda t: t.meta.created_at)
    if service.spec.mode in _JOBS or condition == "service_completed_successfully":
        done = [t for t in current if t.status.state == pb.COMPLETE]
        if service.spec.mode == pb.ServiceSpec.REPLICATED_JOB:
            ready = len({t.slot for t in done}) >= max(service.spec.replicas, 1)
        else:
            ready = bool(done) and all(t.status.state >= pb.COMPLETE for t in current)
        detail = f"{len(done)} task(s) completed"
    else:
        ready = any(t.status.state == pb.RUNNING and t.desired_state == pb.RUNNING
                    and t.status.health != "unhealthy" for t in current)
        best = max(current, key=lambda t: (t.status.state <= pb.RUNNING, t.status.state), default=None)
        detail = "no task yet" if best is None else _describe(best)
    if ready:
        return DependencyState(True, detail)
    if len(failures) >= FAILURE_LIMIT:
        last = failures[-1]
        reason = last.status.err or last.status.message or pb.TaskState.Name(last.status.state).lower()
        return DependencyState(False, detail, f"its tasks failed {len(failures)} times (last: {reason})")
    return DependencyState(False, detail)


def _describe(task: pb.Task) -> str:
    text = pb.TaskState.Name(task.status.state).lower()
    if task.status.health:
        text += f" ({task.status.health})"
    message = task.status.err or task.status.message
    return f"{text}: {message}" if message else text


def waits_for(step: ServiceStep) -> tuple[tuple[str, str], ...]:
    """The dependencies to wait for before `step` runs: none for an unchanged service."""
    return () if step.action == "unchanged" else step.depends_on


__all__ = [
    "DIGEST_LABEL", "ClusterState", "DependencyState", "DeployError", "DeployPlan",
    "Normalizer", "ServiceStep", "data_digest", "dependency_state", "digest_matches",
    "plan_deploy", "spec_changes", "waits_for",
]
