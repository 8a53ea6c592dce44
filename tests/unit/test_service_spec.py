"""ServiceSpec validation (manager.controlapi.service_spec): a table of bad specs, each refused
with a message naming the service and the field, and a table of good ones accepted."""

from __future__ import annotations

import pytest

from manager.controlapi.service_spec import SpecError, changes_tasks, validate_spec
from proto import objects_pb2 as pb


def make_spec(edit=None) -> pb.ServiceSpec:
    spec = pb.ServiceSpec(mode=pb.ServiceSpec.REPLICATED, replicas=1)
    spec.annotations.name = "web"
    spec.task.container.image = "busybox:1.36"
    if edit is not None:
        edit(spec)
    return spec


def mount(type_, source, target, size=0):
    return lambda s: s.task.container.mounts.add(type=type_, source=source, target=target, tmpfs_size_bytes=size)


def port(target, published=0, mode=pb.PortConfig.INGRESS, protocol=pb.PortConfig.TCP):
    return lambda s: s.endpoint.ports.add(target_port=target, published_port=published, publish_mode=mode,
                                          protocol=protocol)


def both(*edits):
    def edit(spec):
        for e in edits:
            e(spec)
    return edit


def setattrs(path, **values):
    def edit(spec):
        obj = spec
        for part in filter(None, path.split(".")):
            obj = getattr(obj, part)
        for key, value in values.items():
            setattr(obj, key, value)
    return edit


BAD = [
    ("no name", setattrs("annotations", name=""), "name is required"),
    ("name with a dot", setattrs("annotations", name="web.1"), "invalid --name 'web.1'"),
    ("name ending in dash", setattrs("annotations", name="web-"), "invalid --name"),
    ("name too long", setattrs("annotations", name="a" * 64), "invalid --name"),
    ("no image", setattrs("task.container", image=""), "service web: image is required"),
    ("image with spaces", setattrs("task.container", image="busy box"), "invalid image reference"),
    ("upper-case repository", setattrs("task.container", image="BusyBox"), "must be lowercase"),
    ("replicas for global", both(setattrs("", mode=pb.ServiceSpec.GLOBAL), setattrs("", replicas=2)),
     "invalid --replicas for mode global"),
    ("replicas for global job", both(setattrs("", mode=pb.ServiceSpec.GLOBAL_JOB), setattrs("", replicas=2)),
     "invalid --replicas for mode global-job"),
    ("max replicas for global", both(setattrs("", mode=pb.ServiceSpec.GLOBAL, replicas=0),
                                     setattrs("task.placement", max_replicas=1)), "invalid --max-replicas"),
    ("bad constraint", lambda s: s.task.placement.constraints.append("node.colour==red"), "invalid --constraint"),
    ("constraint without operator", lambda s: s.task.placement.constraints.append("node.role"),
     "expected KEY==VALUE"),
    ("placement pref not a label", lambda s: s.task.placement.preferences.add(spread_descriptor="node.id"),
     "invalid --placement-pref spread=node.id"),
    ("negative cpu limit", setattrs("task.resources.limits", nano_cpus=-1), "invalid --limit-cpu"),
    ("tiny memory limit", setattrs("task.resources.limits", memory_bytes=1024), "at least 4MiB"),
    ("reservation above limit", both(setattrs("task.resources.limits", memory_bytes=64 << 20),
                                     setattrs("task.resources.reservations", memory_bytes=128 << 20)),
     "--reserve-memory 128MiB must not exceed --limit-memory 64MiB"),
    ("cpu reservation above limit", both(setattrs("task.resources.limits", nano_cpus=500_000_000),
                                         setattrs("task.resources.reservations", nano_cpus=1_000_000_000)),
     "--reserve-cpu 1 must not exceed --limit-cpu 0.5"),
    ("negative pids", setattrs("task.resources", pids_limit=-1), "--limit-pids"),
    ("relative bind source", mount(pb.Mount.BIND, "data", "/data"), "must be an absolute path"),
    ("relative target", mount(pb.Mount.VOLUME, "data", "data"), "invalid --mount target 'data'"),
    ("no target", mount(pb.Mount.VOLUME, "data", ""), "target is required"),
    ("bad volume name", mount(pb.Mount.VOLUME, "/abs", "/data"), "invalid --mount source '/abs'"),
    ("tmpfs with a source", mount(pb.Mount.TMPFS, "x", "/tmp"), "tmpfs mounts take no source"),
    ("negative tmpfs size", mount(pb.Mount.TMPFS, "", "/tmp", -1), "must not be negative"),
    ("tmpfs size on a bind", mount(pb.Mount.BIND, "/srv", "/srv", 1024), "only tmpfs mounts have a size"),
    ("duplicate mount point", both(mount(pb.Mount.VOLUME, "a1", "/d"), mount(pb.Mount.VOLUME, "b1", "/d")),
     "duplicate mount point /d"),
    ("target port 0", port(0, 80), "target port 0"),
    ("published port too high", port(80, 70000), "published port 70000"),
    ("host port without number", port(80, 0, pb.PortConfig.HOST), "needs a published port"),
    ("duplicate published port", both(port(80, 8080), port(81, 8080)), "duplicate published port 8080/tcp"),
    ("ingress port with dnsrr", both(port(80, 8080), setattrs("endpoint", mode=pb.EndpointSpec.DNSRR)),
     "--endpoint-mode dnsrr"),
    ("negative restart delay", setattrs("task.restart", delay=-1), "--restart-delay"),
    ("negative restart window", setattrs("task.restart", window=-1), "--restart-window"),
    ("negative update delay", setattrs("update", delay=-1), "--update-delay"),
    ("failure ratio above 1", setattrs("update", max_failure_ratio=1.5), "--update-max-failure-ratio"),
    ("negative rollback monitor", setattrs("rollback", monitor=-1), "--rollback-monitor"),
    ("rollback of a rollback", setattrs("rollback", failure_action=pb.UpdateConfig.ROLLBACK),
     "--rollback-failure-action"),
    ("health interval below 1ms", setattrs("task.container.healthcheck", interval=0.0001), "--health-interval"),
    ("negative health retries", setattrs("task.container.healthcheck", retries=-1), "--health-retries"),
    ("health test of unknown form", lambda s: s.task.container.healthcheck.test.extend(["SHELL", "x"]),
     "NONE, CMD or CMD-SHELL"),
    ("empty health command", lambda s: s.task.container.healthcheck.test.extend(["CMD-SHELL", " "]),
     "--health-cmd"),
    ("bad stop signal", setattrs("task.container", stop_signal="SIGNOPE"), "--stop-signal"),
    ("negative stop grace period", setattrs("task.container", stop_grace_period=-1), "--stop-grace-period"),
    ("relative workdir", setattrs("task.container", dir="app"), "--workdir"),
    ("env without key", lambda s: s.task.container.env.append("=x"), "invalid --env"),
    ("network twice", lambda s: s.task.networks.extend([pb.NetworkAttachmentConfig(target="n")] * 2),
     "attached more than once"),
    ("custom seccomp without a profile", setattrs("task.container.privileges.seccomp",
                                                  mode=pb.Privileges.SeccompOpts.CUSTOM), "not JSON"),
    ("custom seccomp not a profile", setattrs("task.container.privileges.seccomp", mode=pb.Privileges.SeccompOpts.CUSTOM,
                                              profile=b'{"syscalls": []}'), "no defaultAction"),
    ("seccomp profile with mode unconfined", setattrs("task.container.privileges.seccomp",
                                                      mode=pb.Privileges.SeccompOpts.UNCONFINED, profile=b"{}"),
     "mode is not custom"),
]


@pytest.mark.parametrize("what, edit, fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_specs_are_refused_naming_the_field(what, edit, fragment):
    spec = make_spec(edit)
    with pytest.raises(SpecError) as err:
        validate_spec(spec)
    assert fragment in str(err.value)
    if spec.annotations.name == "web":
        assert str(err.value).startswith("service web: ")


GOOD = [
    ("minimal", None),
    ("registry with port and digest", setattrs(
        "task.container", image="localhost:5000/team/busybox:1.36@sha256:" + "a" * 64)),
    ("image id", setattrs("task.container", image="sha256:" + "0123456789abcdef" * 4)),
    ("name with underscore (stacks)", setattrs("annotations", name="stack_web")),
    ("scale to zero", setattrs("", replicas=0)),
    ("global", setattrs("", mode=pb.ServiceSpec.GLOBAL, replicas=0)),
    ("constraints", lambda s: s.task.placement.constraints.extend(["node.role==worker", "node.labels.zone!=east"])),
    ("spread", lambda s: s.task.placement.preferences.add(spread_descriptor="node.labels.zone")),
    ("mounts", both(mount(pb.Mount.BIND, "/srv", "/srv"), mount(pb.Mount.VOLUME, "data", "/data"),
                    mount(pb.Mount.VOLUME, "", "/anon"), mount(pb.Mount.TMPFS, "", "/tmp", 64 << 20))),
    ("ports", both(port(80, 8080), port(53, 53, protocol=pb.PortConfig.UDP), port(53, 53),
                   port(22, 2222, pb.PortConfig.HOST))),
    ("dnsrr with a host port", both(port(80, 8080, pb.PortConfig.HOST),
                                    setattrs("endpoint", mode=pb.EndpointSpec.DNSRR))),
    ("resources", both(setattrs("task.resources.limits", nano_cpus=500_000_000, memory_bytes=128 << 20),
                       setattrs("task.resources.reservations", nano_cpus=250_000_000, memory_bytes=64 << 20))),
    ("reservation without limit", setattrs("task.resources.reservations", memory_bytes=1 << 30)),
    ("health", lambda s: s.task.container.healthcheck.CopyFrom(
        pb.HealthConfig(test=["CMD-SHELL", "true"], interval=1, timeout=0.5, retries=3, start_period=2))),
    ("no health", lambda s: s.task.container.healthcheck.test.append("NONE")),
    ("seccomp unconfined", setattrs("task.container.privileges.seccomp", mode=pb.Privileges.SeccompOpts.UNCONFINED)),
    ("seccomp custom", setattrs("task.container.privileges.seccomp", mode=pb.Privileges.SeccompOpts.CUSTOM,
                                profile=b'{"defaultAction": "SCMP_ACT_ALLOW"}')),
    ("stop signal forms", setattrs("task.container", stop_signal="KILL")),
    ("stop signal number", setattrs("task.container", stop_signal="9")),
    ("update config", setattrs("update", parallelism=2, delay=1, failure_action=pb.UpdateConfig.ROLLBACK,
                               monitor=5, max_failure_ratio=0.2, order=pb.UpdateConfig.START_FIRST)),
]


@pytest.mark.parametrize("what, edit", GOOD, ids=[g[0] for g in GOOD])
def test_good_specs_pass(what, edit):
    validate_spec(make_spec(edit))


def test_only_task_and_endpoint_changes_touch_the_tasks():
    base = make_spec()
    for edit, expected in ((setattrs("", replicas=9), False),
                           (lambda s: s.annotations.labels.update({"a": "b"}), False),
                           (setattrs("update", parallelism=3), False),
                           (setattrs("task.container", image="busybox:1.37"), True),
                           (lambda s: s.task.container.env.append("A=1"), True),
                           (setattrs("task", force_update=1), True),
                           (port(80, 8080), True)):
        assert changes_tasks(base, make_spec(edit)) is expected
