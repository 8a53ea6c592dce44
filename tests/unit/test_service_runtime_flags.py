"""-t/--tty, --group, --log-driver/--log-opt, --health-start-interval and --max-concurrent (and
Compose's tty, stdin_open, logging, healthcheck.start_interval): flags -> spec, the worker's runtime
spec, and the runtime's log defaults and probe timing. Their bad values (flags, ControlAPI check,
Compose) are rows of the tables in test_runtime_options.py."""

from __future__ import annotations

import textwrap

import pytest

from agent_runtime.containers import _probe_interval
from agent_runtime.spec import ContainerSpec, Healthcheck, LogConfig, validate_spec
from manager.controlapi.service_spec import validate_spec as validate_service
from proto import objects_pb2 as pb
from shoal.cli.service_flags import FlagError, build_spec, update_spec
from shoal.stack import StackFileError, load_stack_sources, to_service_specs
from worker.executor import container_spec


def test_create_flags_fill_the_spec():
    spec = build_spec("busybox", [], {
        "name": "web", "tty": True, "group": ("audio", "4242", "audio"), "log_driver": "json-file",
        "log_opt": ("max-size=1m", "max-file=2"), "health_cmd": "true", "health_start_period": "30s",
        "health_start_interval": "500ms"})
    c = spec.task.container
    assert c.tty and list(c.groups) == ["audio", "4242"]
    assert spec.task.log_driver.name == "json-file"
    assert dict(spec.task.log_driver.options) == {"max-size": "1m", "max-file": "2"}
    assert c.healthcheck.start_interval == 0.5 and c.healthcheck.start_period == 30
    validate_service(spec)
    job = build_spec("busybox", [], {"name": "batch", "mode": "replicated-job", "replicas": 10, "max_concurrent": 3})
    assert job.max_concurrent == 3 and job.replicas == 10
    validate_service(job)


def test_update_flags():
    spec = build_spec("busybox", [], {"name": "web", "group": ("a", "b")})
    new = update_spec(spec, {"group_add": ("c", "a"), "group_rm": ("b",), "tty": True, "log_opt": ("max-file=5",)})
    assert list(new.task.container.groups) == ["a", "c"] and new.task.container.tty
    # --log-opt alone sets an option of the driver the task has (json-file by default)
    assert new.task.log_driver.name == "json-file" and dict(new.task.log_driver.options) == {"max-file": "5"}
    newer = update_spec(new, {"tty": False, "log_driver": "json-file"})
    assert not newer.task.container.tty and not newer.task.log_driver.options     # a new driver, no options


def _load(text: str):
    return load_stack_sources([("stack.yml", textwrap.dedent(text))], {})


def test_compose_keys_convert():
    stack = _load("""\
        services:
          web:
            image: busybox
            tty: true
            stdin_open: true
            logging:
              driver: json-file
              options: {max-size: 200k, max-file: "4", compress: "true"}
            healthcheck:
              test: ["CMD", "true"]
              start_period: 1m
              start_interval: 2s
        """)
    spec = to_service_specs(stack, "st")[0]
    c = spec.task.container
    assert c.tty and c.open_stdin and c.healthcheck.start_interval == 2
    assert spec.task.log_driver.name == "json-file"
    assert dict(spec.task.log_driver.options) == {"max-size": "200k", "max-file": "4"}
    assert stack.warnings() == ["Ignoring unsupported options: logging.options.compress\n"]
    validate_service(spec)


def test_task_to_runtime_spec():
    task = pb.Task(id="t1", service_id="s1", node_id="n1", slot=1)
    task.annotations.name = "web.1"
    c = task.spec.container
    c.image = "busybox"
    c.groups.extend(["audio", "4242"])
    c.tty = c.open_stdin = True
    c.healthcheck.test.extend(["CMD", "true"])
    c.healthcheck.start_interval = 2
    spec = container_spec(task)
    assert spec.group_add == ["audio", "4242"] and spec.tty and spec.open_stdin
    assert spec.healthcheck.start_interval_s == 2
    assert spec.log_config == LogConfig()       # the node's defaults
    task.spec.log_driver.name = "json-file"
    task.spec.log_driver.options.update({"max-size": "1m"})
    assert container_spec(task).log_config == LogConfig(max_size_bytes=1024 * 1024, max_files=0)
    validate_spec(spec)
    assert ContainerSpec.from_json(spec.to_json()) == spec
    task.spec.log_driver.name = "gelf"
    with pytest.raises(ValueError, match="task t1: log driver 'gelf' is not available"):
        container_spec(task)


def test_log_options_take_the_daemons_defaults_key_by_key():
    """A task's max-size with the daemon's (daemon.json log-opts) max-file, as dockerd merges them;
    before, any spec the worker sent carried 10m/3 and daemon.json's log-opts never applied."""
    daemon = LogConfig(max_size_bytes=4096, max_files=7)
    assert LogConfig(max_size_bytes=8192).merged(daemon) == LogConfig(max_size_bytes=8192, max_files=7)
    assert LogConfig().merged(daemon) == daemon
    assert LogConfig().merged(None) == LogConfig(max_size_bytes=10 * 1024 * 1024, max_files=3)
    assert ContainerSpec(image="x").log_config == LogConfig(0, 0)


def test_probe_interval_is_the_start_interval_while_starting_in_the_start_period():
    hc = Healthcheck(test=["CMD", "true"], interval_s=30, start_period_s=60, start_interval_s=2)
    assert _probe_interval(hc, "starting", 10) == 2
    assert _probe_interval(hc, "healthy", 10) == 30        # healthy: the normal interval
    assert _probe_interval(hc, "starting", 60) == 30       # the start period is over
    assert _probe_interval(Healthcheck(test=["CMD", "true"], interval_s=30, start_period_s=60), "starting", 1) == 5
    assert _probe_interval(Healthcheck(test=["CMD", "true"], interval_s=30), "starting", 1) == 30


# ---- --mount options ----------------------------------------------------------------------------

def test_mount_options_from_flag_to_runtime_and_api():
    from shoal.dockerapi import convert
    spec = build_spec("busybox", [], {"name": "web", "mount": (
        "type=volume,source=data,target=/data,volume-nocopy,volume-label=team=a,volume-driver=local,"
        'volume-opt=type=tmpfs,volume-opt=device=tmpfs,"volume-opt=o=size=64m,uid=1000"',
        "type=bind,source=/srv,target=/srv,bind-propagation=rslave",
        "type=tmpfs,target=/scratch,tmpfs-mode=1770,tmpfs-size=1m")})
    validate_service(spec)
    volume, bind, tmpfs = spec.task.container.mounts
    assert volume.volume_nocopy and dict(volume.volume_labels) == {"team": "a"} and volume.volume_driver == "local"
    assert dict(volume.volume_options) == {"type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1000"}
    assert bind.bind_propagation == "rslave" and tmpfs.tmpfs_mode == 0o1770
    task = pb.Task(id="t1", service_id="s1", node_id="n1", slot=1)
    task.annotations.name = "web.1"
    task.spec.CopyFrom(spec.task)
    runtime = container_spec(task).mounts
    assert (runtime[0].no_copy, runtime[0].volume_labels, runtime[0].volume_driver) == (True, {"team": "a"}, "local")
    assert runtime[0].volume_options == {"type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1000"}
    assert runtime[1].propagation == "rslave" and runtime[2].tmpfs_mode == 0o1770
    import json
    shown = json.loads(json.dumps(convert.service_json(pb.Service(id="s1", spec=spec))["Spec"]))
    mounts = shown["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert mounts[0]["VolumeOptions"] == {"NoCopy": True, "Labels": {"team": "a"}, "DriverConfig": {
        "Name": "local", "Options": {"device": "tmpfs", "o": "size=64m,uid=1000", "type": "tmpfs"}}}
    assert mounts[1]["BindOptions"] == {"Propagation": "rslave"}
    assert mounts[2]["TmpfsOptions"] == {"SizeBytes": 1024 * 1024, "Mode": 0o1770}
    assert list(convert.parse_service_spec(shown).task.container.mounts) == list(spec.task.container.mounts)


@pytest.mark.parametrize("text, message", [
    ("type=bind,source=/a,target=/b,volume-nocopy", "cannot mix 'volume-*' options with mount type 'bind'"),
    ("type=volume,target=/b,bind-propagation=shared", "cannot mix 'bind-*' options with mount type 'volume'"),
    ("type=bind,source=/a,target=/b,bind-propagation=sideways", "invalid value for bind-propagation: sideways"),
    ("type=tmpfs,target=/b,tmpfs-mode=99", "invalid value for tmpfs-mode: 99"),
    ("type=volume,target=/b,volume-opt=type", "invalid value for volume-opt: type"),
])
def test_bad_mount_options(text, message):
    with pytest.raises(FlagError) as info:
        build_spec("busybox", [], {"name": "web", "mount": (text,)})
    assert message in str(info.value)


def test_compose_mount_options():
    stack = _load("""\
        services:
          web:
            image: busybox
            volumes:
              - {type: volume, source: data, target: /data, volume: {nocopy: true}}
              - {type: bind, source: /srv, target: /srv, bind: {propagation: rshared}}
              - {type: tmpfs, target: /t, tmpfs: {size: 1m, mode: 0700}}
        volumes:
          data: {}
        """)
    volume, bind, tmpfs = to_service_specs(stack, "st")[0].task.container.mounts
    assert volume.volume_nocopy and bind.bind_propagation == "rshared" and tmpfs.tmpfs_mode == 0o700


def test_a_stack_volumes_driver_and_labels_go_with_its_mounts():
    """docker/cli's convertVolumeToMount: a top-level volume's driver and labels are the mount's
    VolumeOptions; a driver the node lacks fails the task there, naming it. The local driver's
    options (driver_opts) go with each mount too; the node's runtime checks and mounts them."""
    stack = _load("""\
        services:
          web:
            image: busybox
            volumes: [data:/data, plain:/plain]
        volumes:
          data: {driver: rexray, labels: {backup: "yes"}}
          plain: {driver_opts: {type: tmpfs, device: tmpfs, o: "size=1m"}}
        """)
    data, plain = to_service_specs(stack, "st")[0].task.container.mounts
    assert data.volume_driver == "rexray" and data.volume_labels["backup"] == "yes"
    assert data.volume_labels["com.docker.stack.namespace"] == "st"
    assert plain.volume_driver == "" and not data.volume_options
    assert dict(plain.volume_options) == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}


def test_inspect_pretty_shows_sysctls_ulimits_and_the_log_driver():
    from shoal.cli.service_format import pretty
    spec = build_spec("busybox", [], {"name": "web", "sysctl": ("net.core.somaxconn=1024",),
                                      "ulimit": ("nofile=1024:2048",), "log_driver": "json-file",
                                      "log_opt": ("max-size=1m",)})
    text = pretty(pb.Service(id="s1", spec=spec))
    assert " SysCtls:\n  net.core.somaxconn: 1024\n Ulimits:\n  nofile: 1024:2048\n" in text
    assert "Log Driver:\n Name:\t\tjson-file\n LogOpts:\n  max-size: 1m\n" in text


def test_compose_group_add_is_the_services_groups():
    """Compose group_add (names or GIDs) are the service's supplementary groups, as --group."""
    stack = _load("""\
        services:
          web:
            image: busybox
            group_add: [mail, 4242, mail]
        """)
    assert list(to_service_specs(stack, "st")[0].task.container.groups) == ["mail", "4242"]
    with pytest.raises(StackFileError, match=r"services.web.group_add\[0\]: expected a group name or GID, got .a b."):
        _load("services: {web: {image: busybox, group_add: ['a b']}}\n")
