"""`shoal service create|update` flags → ServiceSpec (shoal.cli.service_flags)."""

from __future__ import annotations

import pytest

from proto import objects_pb2 as pb
from shoal.cli.service_flags import (FlagError, build_spec, parse_cpus, parse_memory, parse_mount, parse_port,
                                     update_spec)


@pytest.mark.parametrize("text, expected", [("64M", 64 << 20), ("1G", 1 << 30), ("512k", 512 << 10),
                                            ("1.5g", int(1.5 * 2**30)), ("1048576", 1 << 20), ("64MiB", 64 << 20),
                                            ("64mb", 64 << 20)])
def test_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "M", "64X", "-1G", "1 2"])
def test_bad_memory(text):
    with pytest.raises(FlagError, match='for "--limit-memory" flag'):
        parse_memory(text)


@pytest.mark.parametrize("text, expected", [("0.5", 500_000_000), ("2", 2_000_000_000), ("0.001", 1_000_000)])
def test_cpus(text, expected):
    assert parse_cpus(text) == expected


@pytest.mark.parametrize("text", ["half", "-1"])
def test_bad_cpus(text):
    with pytest.raises(FlagError):
        parse_cpus(text)


@pytest.mark.parametrize("text, expected", [
    ("type=bind,source=/srv,target=/data,readonly", pb.Mount(type=pb.Mount.BIND, source="/srv", target="/data",
                                                             read_only=True)),
    ("src=data,dst=/data", pb.Mount(type=pb.Mount.VOLUME, source="data", target="/data")),
    ("type=volume,target=/data,ro=false", pb.Mount(type=pb.Mount.VOLUME, target="/data")),
    ("type=tmpfs,target=/run,tmpfs-size=64M", pb.Mount(type=pb.Mount.TMPFS, target="/run",
                                                       tmpfs_size_bytes=64 << 20)),
])
def test_mounts(text, expected):
    assert parse_mount(text) == expected


@pytest.mark.parametrize("text, fragment", [("type=nfs,target=/x", "invalid mount type"), ("source=/x", "target is required"),
                                            ("type=bind,src=/a,dst=/b,colour=red", "unknown field 'colour'"),
                                            ("type=bind,src=/a,dst=/b,tmpfs-size=1M", "cannot mix 'tmpfs-.' options with mount type 'bind'"),
                                            ("target=/x,readonly=maybe", "invalid boolean")])
def test_bad_mounts(text, fragment):
    with pytest.raises(FlagError, match=fragment) as err:
        parse_mount(text)
    assert str(err.value).startswith(f'invalid argument "{text}" for "--mount" flag: ')


@pytest.mark.parametrize("text, expected", [
    ("8080:80", (8080, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS)),
    ("53:53/udp", (53, 53, pb.PortConfig.UDP, pb.PortConfig.INGRESS)),
    ("80", (0, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS)),
    ("published=8080,target=80", (8080, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS)),
    ("mode=host,published=2222,target=22,protocol=tcp", (2222, 22, pb.PortConfig.TCP, pb.PortConfig.HOST)),
])
def test_ports(text, expected):
    p = parse_port(text)
    assert (p.published_port, p.target_port, p.protocol, p.publish_mode) == expected


@pytest.mark.parametrize("text", ["0:80", "8080:70000", "80/sctp", "published=80", "mode=bridge,target=80", "x:y"])
def test_bad_ports(text):
    with pytest.raises(FlagError, match='"--publish" flag'):
        parse_port(text)


def test_create_flags_build_the_spec_with_dockers_defaults(tmp_path):
    env_file = tmp_path / "web.env"
    env_file.write_text("# comment\nA=1\n\nB=2\n")
    spec = build_spec("busybox:1.36", ["sleep", "100"], {
        "name": "web", "env": ("C=3",), "env_file": (str(env_file),), "label": ("tier=front", "flag"),
        "container_label": ("x=y",), "constraint": ("node.role==worker",),
        "placement_pref": ("spread=node.labels.zone",), "max_replicas": 2,
        "limit_cpu": "0.5", "limit_memory": "128M", "reserve_cpu": "0.25", "reserve_memory": "64M",
        "limit_pids": 100, "mount": ("type=tmpfs,target=/run",), "publish": ("8080:80",),
        "network": ("name=backend,alias=web-internal",), "endpoint_mode": "dnsrr",
        "health_cmd": "wget -q localhost", "health_interval": "5s", "health_retries": 3,
        "stop_grace_period": "30s", "stop_signal": "TERM", "hostname": "h", "user": "1000:1000",
        "workdir": "/app", "entrypoint": "/bin/sh -c", "init": True, "cap_add": ("NET_ADMIN",),
        "secret": ("source=dbpass,target=db,mode=0400",)})
    c = spec.task.container
    assert spec.annotations.name == "web" and spec.mode == pb.ServiceSpec.REPLICATED and spec.replicas == 1
    assert (c.image, list(c.args), list(c.command)) == ("busybox:1.36", ["sleep", "100"], ["/bin/sh", "-c"])
    assert list(c.env) == ["A=1", "B=2", "C=3"]
    assert dict(spec.annotations.labels) == {"tier": "front", "flag": ""} and dict(c.labels) == {"x": "y"}
    assert list(spec.task.placement.constraints) == ["node.role==worker"]
    assert spec.task.placement.preferences[0].spread_descriptor == "node.labels.zone"
    assert spec.task.placement.max_replicas == 2
    r = spec.task.resources
    assert (r.limits.nano_cpus, r.limits.memory_bytes, r.reservations.nano_cpus, r.reservations.memory_bytes,
            r.pids_limit) == (500_000_000, 128 << 20, 250_000_000, 64 << 20, 100)
    assert spec.endpoint.mode == pb.EndpointSpec.DNSRR and spec.endpoint.ports[0].published_port == 8080
    assert (spec.task.networks[0].target, list(spec.task.networks[0].aliases)) == ("backend", ["web-internal"])
    assert list(c.healthcheck.test) == ["CMD-SHELL", "wget -q localhost"]
    assert (c.healthcheck.interval, c.healthcheck.retries) == (5.0, 3)
    assert (c.stop_grace_period, c.stop_signal, c.hostname, c.user, c.dir, c.init) == (
        30.0, "TERM", "h", "1000:1000", "/app", True)
    assert list(c.cap_add) == ["NET_ADMIN"]
    assert (c.secrets[0].secret_name, c.secrets[0].file.name, c.secrets[0].file.mode) == ("dbpass", "db", 0o400)
    assert spec.task.restart == pb.RestartPolicy(condition=pb.RestartPolicy.ANY, delay=5.0)
    assert spec.update == pb.UpdateConfig(parallelism=1, monitor=5.0) == spec.rollback


def test_create_flags_for_restart_update_and_rollback():
    spec = build_spec("busybox", [], {
        "replicas": 6, "restart_condition": "on-failure", "restart_delay": "1s", "restart_max_attempts": 3,
        "restart_window": "1m", "update_parallelism": 2, "update_delay": "10s", "update_failure_action": "rollback",
        "update_monitor": "20s", "update_max_failure_ratio": 0.25, "update_order": "start-first",
        "rollback_parallelism": 0, "rollback_failure_action": "continue", "rollback_order": "stop-first"})
    assert spec.replicas == 6
    assert spec.task.restart == pb.RestartPolicy(condition=pb.RestartPolicy.ON_FAILURE, delay=1.0,
                                                 max_attempts=3, window=60.0)
    assert spec.update == pb.UpdateConfig(parallelism=2, delay=10.0, failure_action=pb.UpdateConfig.ROLLBACK,
                                          monitor=20.0, max_failure_ratio=0.25, order=pb.UpdateConfig.START_FIRST)
    assert spec.rollback == pb.UpdateConfig(parallelism=0, failure_action=pb.UpdateConfig.CONTINUE, monitor=5.0)


def test_jobs_restart_on_failure_and_have_no_update_config():
    spec = build_spec("busybox", [], {"mode": "replicated-job", "replicas": 3})
    assert spec.mode == pb.ServiceSpec.REPLICATED_JOB and spec.replicas == 3
    assert spec.task.restart.condition == pb.RestartPolicy.ON_FAILURE
    assert not spec.HasField("update")


def test_global_services_have_no_replicas():
    assert build_spec("busybox", [], {"mode": "global"}).replicas == 0
    with pytest.raises(FlagError, match="replicas can only be used with replicated or replicated-job mode, not global"):
        build_spec("busybox", [], {"mode": "global", "replicas": 2})


@pytest.mark.parametrize("opts, flag", [
    ({"no_healthcheck": True, "health_cmd": "true"}, "--no-healthcheck"),
    ({"update_failure_action": "explode"}, "--update-failure-action"),
    ({"rollback_failure_action": "rollback"}, "--rollback-failure-action"),
    ({"update_max_failure_ratio": 2.0}, "--update-max-failure-ratio"),
    ({"restart_delay": "soon"}, "--restart-delay"),
    ({"restart_condition": "always"}, "--restart-condition"),
    ({"endpoint_mode": "nat"}, "--endpoint-mode"),
    ({"placement_pref": ("binpack",)}, "--placement-pref"),
    ({"label": ("=x",)}, "--label"),
    ({"replicas": -1}, "--replicas"),
])
def test_bad_create_flags_name_the_flag(opts, flag):
    with pytest.raises(FlagError) as err:
        build_spec("busybox", [], opts)
    assert err.value.flag == flag


def base_spec():
    return build_spec("busybox:1.36", ["sleep", "1000"], {
        "name": "web", "replicas": 3, "env": ("A=1", "B=2"), "label": ("tier=front",),
        "constraint": ("node.role==worker",), "mount": ("type=volume,source=data,target=/data",),
        "publish": ("8080:80", "53:53/udp"), "network": ("net-aaa",), "health_cmd": "true",
        "limit_memory": "128M"})


def test_update_flags_change_only_what_was_asked():
    old = base_spec()
    new = update_spec(old, {
        "image": "busybox:1.37", "args": "sleep 5", "env_add": ("B=3", "C=4"), "env_rm": ("A",),
        "label_add": ("owner=me",), "label_rm": ("tier",), "constraint_add": ("node.labels.zone==east",),
        "constraint_rm": ("node.role==worker",), "mount_add": ("type=tmpfs,target=/tmp",), "mount_rm": ("/data",),
        "publish_add": ("9090:90",), "publish_rm": ("53/udp",), "network_rm": ("net-a",), "network_add": ("front",),
        "replicas": 5, "limit_cpu": "1", "update_parallelism": 4, "force": True})
    c = new.task.container
    assert (c.image, list(c.args)) == ("busybox:1.37", ["sleep", "5"])
    assert list(c.env) == ["B=3", "C=4"]
    assert dict(new.annotations.labels) == {"owner": "me"}
    assert list(new.task.placement.constraints) == ["node.labels.zone==east"]
    assert [(m.type, m.target) for m in c.mounts] == [(pb.Mount.TMPFS, "/tmp")]
    assert [(p.published_port, p.target_port) for p in new.endpoint.ports] == [(8080, 80), (9090, 90)]
    assert [n.target for n in new.task.networks] == ["front"]
    assert new.replicas == 5 and new.task.force_update == 1 and new.update.parallelism == 4
    assert new.task.resources.limits.nano_cpus == 1_000_000_000
    assert new.task.resources.limits.memory_bytes == 128 << 20          # kept
    assert list(c.healthcheck.test) == ["CMD-SHELL", "true"]           # kept
    assert old == base_spec()                                          # the input is not modified


def test_update_with_no_flags_is_the_same_spec():
    assert update_spec(base_spec(), {}) == base_spec()


def test_update_health_flags():
    old = base_spec()
    assert list(update_spec(old, {"no_healthcheck": True}).task.container.healthcheck.test) == ["NONE"]
    tuned = update_spec(old, {"health_interval": "2s"}).task.container.healthcheck
    assert list(tuned.test) == ["CMD-SHELL", "true"] and tuned.interval == 2.0


def test_update_publish_add_replaces_the_same_published_port():
    new = update_spec(base_spec(), {"publish_add": ("8080:81",)})
    assert sorted((p.published_port, p.target_port) for p in new.endpoint.ports) == [(53, 53), (8080, 81)]


def test_update_replicas_of_a_global_service_is_refused():
    spec = build_spec("busybox", [], {"name": "agent", "mode": "global"})
    with pytest.raises(FlagError, match="not global"):
        update_spec(spec, {"replicas": 2})


def test_env_file_and_secret_mode_use_dockers_grammar(tmp_path, monkeypatch):
    env = tmp_path / "app.env"
    env.write_text("A='quoted'\nFROM_ENV\nMISSING\n")
    monkeypatch.setenv("FROM_ENV", "yes")
    monkeypatch.delenv("MISSING", raising=False)
    spec = build_spec("busybox", [], {"env_file": (str(env),), "secret": ("source=pw,mode=0400",
                                                                         "source=key,mode=288")})
    assert list(spec.task.container.env) == ["A='quoted'", "FROM_ENV=yes"]
    assert [s.file.mode for s in spec.task.container.secrets] == [0o400, 288]
    env.write_text("export A=1\n")
    with pytest.raises(FlagError, match="variable 'export A' contains whitespaces"):
        build_spec("busybox", [], {"env_file": (str(env),)})
