"""Unit tests of shoal.stack: parsing, validation errors (file, line, key), merging, interpolation."""

from __future__ import annotations

import glob
import os
import textwrap

import pytest

from proto import objects_pb2 as pb
from shoal.stack import StackFileError, load_stack, load_stack_sources, to_service_specs
from shoal.stack.interpolate import InterpolationError, interpolate

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def load(text: str, env: dict[str, str] | None = None, name: str = "web.yml", **kw):
    return load_stack_sources([(name, textwrap.dedent(text))], env or {}, **kw)


# ---- invalid files: every error names file, line and key path ------------------------------------

INVALID = [
    # (case id, file text, line, key path, message fragment)
    ("replicas-not-int", """\
        services:
          web:
            image: busybox
            deploy:
              replicas: three
        """, 5, "services.web.deploy.replicas", "expected an integer, got 'three'"),
    ("unknown-service-key", """\
        services:
          web:
            image: busybox
            comand: ["true"]
        """, 4, "services.web.comand", "unknown key (did you mean 'command'?)"),
    ("forbidden-volumes-from", """\
        services:
          web:
            volumes_from: [db]
            image: busybox
        """, 3, "services.web.volumes_from", "To share a volume between services"),
    ("logging-driver", """\
        services:
          web:
            image: busybox
            logging:
              driver: syslog
        """, 5, "services.web.logging.driver", "the 'syslog' logging driver is not available"),
    ("restart-bad", """\
        services:
          web:
            image: busybox
            restart: sometimes
        """, 4, "services.web.restart", "invalid restart policy 'sometimes'"),
    ("missing-image", """\
        services:
          web:
            command: ["true"]
        """, 3, "services.web.image", "required"),
    ("unknown-top-level", """\
        services:
          web: {image: busybox}
        servics: {}
        """, 3, "servics", "unknown key (did you mean 'services'?)"),
    ("bad-duration", """\
        services:
          web:
            image: busybox
            deploy:
              update_config:
                delay: 10
        """, 6, "services.web.deploy.update_config.delay", "expected a duration like '10s', got 10"),
    ("bad-memory", """\
        services:
          web:
            image: busybox
            deploy:
              resources:
                limits:
                  memory: lots
        """, 7, "services.web.deploy.resources.limits.memory", "invalid size: 'lots'"),
    ("bad-cpus", """\
        services:
          web:
            image: busybox
            deploy:
              resources:
                reservations:
                  cpus: "-1"
        """, 7, "services.web.deploy.resources.reservations.cpus", "must not be negative"),
    ("bad-mode", """\
        services:
          web:
            image: busybox
            deploy: {mode: daemon}
        """, 4, "services.web.deploy.mode", "expected one of replicated, global"),
    ("replicas-with-global", """\
        services:
          web:
            image: busybox
            deploy:
              mode: global
              replicas: 2
        """, 6, "services.web.deploy.replicas", "cannot be used with mode global"),
    ("bad-port", """\
        services:
          web:
            image: busybox
            ports:
              - "80:80"
              - "8o:80"
        """, 6, "services.web.ports[1]", "published port '8o' is not a number"),
    ("host-ip-port", """\
        services:
          web:
            image: busybox
            ports: ["127.0.0.1:80:80"]
        """, 4, "services.web.ports[0]", "host IP is not supported"),
    ("port-out-of-range", """\
        services:
          web:
            image: busybox
            ports:
              - target: 70000
        """, 5, "services.web.ports[0].target", "outside 1-65535"),
    ("port-taken-twice", """\
        services:
          web:
            image: busybox
            ports: ["8080:80"]
          api:
            image: busybox
            ports: ["8080:81"]
        """, 7, "services.api.ports", "8080/tcp is also published by service web"),
    ("undeclared-network", """\
        services:
          web:
            image: busybox
            networks: [front]
        """, 4, "services.web.networks.front", "not declared under the top-level networks"),
    ("undeclared-volume", """\
        services:
          web:
            image: busybox
            volumes: ["data:/data"]
        """, 4, "services.web.volumes[0]", "volume 'data' is not declared"),
    ("relative-target", """\
        services:
          web:
            image: busybox
            volumes: ["/srv:data"]
        """, 4, "services.web.volumes[0]", "must be an absolute path"),
    ("bad-volume-mode", """\
        services:
          web:
            image: busybox
            volumes: ["/srv:/data:z"]
        """, 4, "services.web.volumes[0]", "volume mode 'z' is not supported"),
    ("undeclared-secret", """\
        services:
          web:
            image: busybox
            secrets: [db_password]
        """, 4, "services.web.secrets[0]", "secret 'db_password' is not declared"),
    ("secret-without-source", """\
        services:
          web: {image: busybox}
        secrets:
          pw: {labels: {a: b}}
        """, 4, "secrets.pw", "give exactly one of file, environment"),
    ("secret-env-missing", """\
        services:
          web: {image: busybox}
        secrets:
          pw: {environment: NOPE}
        """, 4, "secrets.pw.environment", "environment variable NOPE is not set"),
    ("depends-on-unknown", """\
        services:
          web:
            image: busybox
            depends_on: [db]
        """, 4, "services.web.depends_on.db", "service 'db' is not defined"),
    ("depends-on-cycle", """\
        services:
          a:
            image: busybox
            depends_on: [b]
          b:
            image: busybox
            depends_on:
              c: {condition: service_healthy}
          c:
            image: busybox
            depends_on: [a]
        """, 4, "services.a.depends_on", "dependency cycle: a -> b -> c -> a"),
    ("bad-condition", """\
        services:
          a: {image: busybox}
          b:
            image: busybox
            depends_on:
              a: {condition: healthy}
        """, 6, "services.b.depends_on.a.condition", "expected one of service_started"),
    ("bad-constraint", """\
        services:
          web:
            image: busybox
            deploy:
              placement:
                constraints: ["node.rolee==manager"]
        """, 6, "services.web.deploy.placement.constraints[0]", "unknown constraint attribute 'node.rolee'"),
    ("malformed-constraint", """\
        services:
          web:
            image: busybox
            deploy:
              placement:
                constraints:
                  - node.role=manager
        """, 7, "services.web.deploy.placement.constraints[0]", "expected a constraint like"),
    ("bad-failure-ratio", """\
        services:
          web:
            image: busybox
            deploy:
              update_config: {max_failure_ratio: 2}
        """, 5, "services.web.deploy.update_config.max_failure_ratio", "between 0.0 and 1.0"),
    ("rollback-cannot-rollback", """\
        services:
          web:
            image: busybox
            deploy:
              rollback_config: {failure_action: rollback}
        """, 5, "services.web.deploy.rollback_config.failure_action", "expected one of continue, pause"),
    ("bad-healthcheck-test", """\
        services:
          web:
            image: busybox
            healthcheck:
              test: ["curl", "localhost"]
        """, 5, "services.web.healthcheck.test", "starts with CMD, CMD-SHELL or NONE"),
    ("bad-secret-mode", """\
        services:
          web:
            image: busybox
            secrets:
              - source: pw
                mode: 0999
        secrets:
          pw: {environment: HOME}
        """, 6, "services.web.secrets[0].mode", "invalid mode specified"),
    ("environment-nested", """\
        services:
          web:
            image: busybox
            environment:
              A: {b: c}
        """, 5, "services.web.environment.A", "expected a string, number or boolean"),
    ("duplicate-key", """\
        services:
          web:
            image: busybox
            image: alpine
        """, 4, "services.web.image", "duplicate key (first defined on line 3)"),
    ("yaml-syntax", """\
        services:
          web:
            image: [busybox
        """, 4, "", "invalid YAML"),
    ("uppercase-image", """\
        services:
          web:
            image: BusyBox
        """, 3, "services.web.image", "invalid image reference"),
    ("required-variable", """\
        services:
          web:
            image: ${IMAGE:?set IMAGE to the image to run}
        """, 3, "services.web.image", "required variable IMAGE is missing a value: set IMAGE"),
    ("bad-interpolation", """\
        services:
          web:
            image: busybox
            command: echo $1
        """, 4, "services.web.command", "invalid interpolation format"),
    ("external-with-driver", """\
        services:
          web: {image: busybox, networks: [pub]}
        networks:
          pub:
            external: true
            driver: overlay
        """, 6, "networks.pub.driver", "cannot be combined with external"),
    ("non-overlay-network", """\
        services:
          web: {image: busybox}
        networks:
          n: {driver: bridge}
        """, 4, "networks.n.driver", "only the overlay driver"),
    ("bad-subnet", """\
        services:
          web: {image: busybox}
        networks:
          n:
            ipam:
              config:
                - subnet: 198.18.0.0/33
        """, 7, "networks.n.ipam.config[0].subnet", "expected an IPv4 subnet"),
    ("gateway-outside", """\
        services:
          web: {image: busybox}
        networks:
          n:
            ipam:
              config:
                - {subnet: 198.18.4.0/24, gateway: 198.18.5.1}
        """, 7, "networks.n.ipam.config[0].gateway", "not inside"),
    ("no-services", """\
        version: "3.8"
        services: {}
        """, 2, "services", "at least one service"),
    ("not-a-mapping", """\
        - just
        - a list
        """, 1, "", "a stack file is a mapping"),
    ("yes-is-not-a-boolean", """\
        services:
          web:
            image: busybox
            init: yes
        """, 4, "services.web.init", "expected true or false, got 'yes'"),
    ("working-dir-relative", """\
        services:
          web:
            image: busybox
            working_dir: app
        """, 4, "services.web.working_dir", "absolute path"),
    ("tmpfs-with-source", """\
        services:
          web:
            image: busybox
            volumes:
              - {type: tmpfs, source: x, target: /t}
        """, 5, "services.web.volumes[0].source", "a tmpfs mount has no source"),
]


@pytest.mark.parametrize("text, line, path, fragment", [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_files_name_file_line_and_key(text, line, path, fragment):
    with pytest.raises(StackFileError) as info:
        load(text)
    problems = info.value.problems
    expected = f"web.yml:{line}: {path}: " if path else f"web.yml:{line}: "
    assert any(str(p).startswith(expected) and fragment in str(p) for p in problems), str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(StackFileError) as info:
        load("""\
            services:
              web:
                image: busybox
                deploy: {replicas: many}
                ports: ["x:80"]
              api:
                imag: busybox
            """)
    paths = {p.path for p in info.value.problems}
    assert {"services.web.deploy.replicas", "services.web.ports[0]", "services.api.imag",
            "services.api.image"} <= paths


def test_unreadable_file_is_a_stack_file_error(tmp_path):
    with pytest.raises(StackFileError, match="cannot read the stack file"):
        load_stack([str(tmp_path / "missing.yml")])


# ---- valid files and their conversion -----------------------------------------------------------

FULL = """\
    version: "3.8"
    x-common: &common
      image: ${REGISTRY:-127.0.0.1:5000}/shoal/busybox:latest
      labels: [tier=app]
    services:
      web:
        <<: *common
        entrypoint: /bin/sh -c
        command: ["httpd -f -p 80"]
        environment:
          MODE: ${MODE-production}
          DEBUG: false
          RATE: 1.5
          FROM_ENV:
        ports:
          - "8080:80"
          - "9000-9001:7000-7001/udp"
          - {target: 443, published: 8443, mode: host}
        networks:
          front: {aliases: [www]}
          back:
        volumes:
          - data:/data:ro
          - ./site:/site
          - type: tmpfs
            target: /cache
            tmpfs: {size: 16M}
        tmpfs: /run:size=1m
        hostname: web-host
        user: "1000"
        working_dir: /site
        stop_grace_period: 1m30s
        stop_signal: SIGQUIT
        cap_add: [net_admin]
        cap_drop: [ALL]
        init: true
        healthcheck:
          test: wget -q -O- http://127.0.0.1/
          interval: 5s
          timeout: 2s
          retries: 3
          start_period: 500ms
        secrets:
          - pw
          - {source: pw, target: other, uid: "1", gid: "2", mode: 0440}
        configs: [conf]
        depends_on:
          db: {condition: service_healthy}
        deploy:
          replicas: ${REPLICAS:-4}
          endpoint_mode: vip
          labels: {owner: team-a}
          resources:
            limits: {cpus: "0.5", memory: 64M, pids: 100}
            reservations: {cpus: 0.25, memory: 1G}
          restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
          update_config: {parallelism: 2, delay: 10s, failure_action: rollback, monitor: 30s,
                          max_failure_ratio: 0.2, order: start-first}
          rollback_config: {delay: 1s}
          placement:
            constraints: [node.role==worker, "node.labels.zone != east"]
            preferences: [{spread: node.labels.zone}]
            max_replicas_per_node: 2
      db:
        image: postgres:16
        environment: [POSTGRES_DB=app, "EMPTY="]
        deploy: {mode: global, endpoint_mode: dnsrr}
        networks: [back]
    networks:
      front: {attachable: true, labels: {a: b}}
      back:
        internal: true
        ipam: {config: [{subnet: 198.18.8.0/24, gateway: 198.18.8.254}]}
      unused: {}
    volumes:
      data: {labels: {backup: "yes"}}
    secrets:
      pw: {environment: PW}
    configs:
      conf: {content: "key = value"}
    """


@pytest.fixture
def full_stack():
    return load(FULL, {"PW": "hunter2", "FROM_ENV": "yes"}, project_dir="/srv/proj")


def test_a_full_file_converts_like_docker_stack_deploy(full_stack):
    from proto import objects_pb2 as pb
    from shoal.stack import to_config_specs, to_network_specs, to_secret_specs, to_volume_specs

    assert full_stack.deploy_order == (("db",), ("web",))
    db, web = to_service_specs(full_stack, "demo")
    assert web.annotations.name == "demo_web"
    assert dict(web.annotations.labels) == {"owner": "team-a", "com.docker.stack.namespace": "demo",
                                            "com.docker.stack.image": "127.0.0.1:5000/shoal/busybox:latest"}
    c = web.task.container
    assert list(c.command) == ["/bin/sh", "-c"] and list(c.args) == ["httpd -f -p 80"]
    assert list(c.env) == ["DEBUG=false", "FROM_ENV=yes", "MODE=production", "RATE=1.5"]
    assert dict(c.labels) == {"tier": "app", "com.docker.stack.namespace": "demo"}
    assert [(m.type, m.source, m.target, m.read_only, m.tmpfs_size_bytes) for m in c.mounts] == [
        (pb.Mount.VOLUME, "demo_data", "/data", True, 0), (pb.Mount.BIND, "/srv/proj/site", "/site", False, 0),
        (pb.Mount.TMPFS, "", "/cache", False, 16 << 20), (pb.Mount.TMPFS, "", "/run", False, 1 << 20)]
    assert (c.hostname, c.user, c.dir, c.stop_grace_period, c.stop_signal, c.init) == \
        ("web-host", "1000", "/site", 90.0, "SIGQUIT", True)
    assert list(c.cap_add) == ["NET_ADMIN"] and list(c.cap_drop) == ["ALL"]
    assert list(c.healthcheck.test) == ["CMD-SHELL", "wget -q -O- http://127.0.0.1/"]
    assert (c.healthcheck.interval, c.healthcheck.timeout, c.healthcheck.retries,
            c.healthcheck.start_period) == (5.0, 2.0, 3, 0.5)
    assert [(s.secret_name, s.file.name, s.file.uid, s.file.gid, s.file.mode) for s in c.secrets] == [
        ("demo_pw", "pw", "0", "0", 0o444), ("demo_pw", "other", "1", "2", 0o440)]
    assert [(r.config_name, r.file.name) for r in c.configs] == [("demo_conf", "/conf")]
    assert web.replicas == 4 and web.mode == pb.ServiceSpec.REPLICATED
    res = web.task.resources
    assert (res.limits.nano_cpus, res.limits.memory_bytes, res.pids_limit) == (500_000_000, 64 << 20, 100)
    assert (res.reservations.nano_cpus, res.reservations.memory_bytes) == (250_000_000, 1 << 30)
    assert (web.task.restart.condition, web.task.restart.delay, web.task.restart.max_attempts,
            web.task.restart.window) == (pb.RestartPolicy.ON_FAILURE, 5.0, 3, 120.0)
    u = web.update
    assert (u.parallelism, u.delay, u.failure_action, u.monitor, u.order) == \
        (2, 10.0, pb.UpdateConfig.ROLLBACK, 30.0, pb.UpdateConfig.START_FIRST)
    assert u.max_failure_ratio == pytest.approx(0.2)
    assert (web.rollback.parallelism, web.rollback.delay) == (1, 1.0)
    p = web.task.placement
    assert list(p.constraints) == ["node.role==worker", "node.labels.zone != east"]
    assert [x.spread_descriptor for x in p.preferences] == ["node.labels.zone"] and p.max_replicas == 2
    assert [(n.target, list(n.aliases)) for n in web.task.networks] == [
        ("demo_back", ["web"]), ("demo_front", ["web", "www"])]
    assert [(x.published_port, x.target_port, x.protocol, x.publish_mode) for x in web.endpoint.ports] == [
        (8080, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS), (9000, 7000, pb.PortConfig.UDP, pb.PortConfig.INGRESS),
        (9001, 7001, pb.PortConfig.UDP, pb.PortConfig.INGRESS), (8443, 443, pb.PortConfig.TCP, pb.PortConfig.HOST)]
    assert db.mode == pb.ServiceSpec.GLOBAL and db.endpoint.mode == pb.EndpointSpec.DNSRR
    assert list(db.task.container.env) == ["EMPTY=", "POSTGRES_DB=app"]
    assert not db.task.HasField("restart") and not db.HasField("update")

    networks = {n.annotations.name: n for n in to_network_specs(full_stack, "demo")}
    assert sorted(networks) == ["demo_back", "demo_front"]            # unused is not created
    assert networks["demo_front"].attachable and networks["demo_back"].internal
    assert [(i.subnet, i.gateway) for i in networks["demo_back"].ipam] == [("198.18.8.0/24", "198.18.8.254")]
    assert networks["demo_front"].driver == "overlay"
    assert networks["demo_front"].annotations.labels["com.docker.stack.namespace"] == "demo"
    assert [(v.annotations.name, v.annotations.labels["backup"]) for v in to_volume_specs(full_stack, "demo")] == [
        ("demo_data", "yes")]
    assert [(s.annotations.name, s.data) for s in to_secret_specs(full_stack, "demo")] == [("demo_pw", b"hunter2")]
    assert [(s.annotations.name, s.data) for s in to_config_specs(full_stack, "demo")] == [("demo_conf", b"key = value")]


def test_defaults_a_service_on_the_default_network_with_one_replica():
    stack = load("services:\n  web:\n    image: busybox\n")
    (spec,) = to_service_specs(stack, "s")
    assert spec.replicas == 1
    assert [(n.target, list(n.aliases)) for n in spec.task.networks] == [("s_default", ["web"])]


def test_external_and_named_objects_keep_their_names():
    from shoal.stack import external_names, to_network_specs
    stack = load("""\
        services:
          web:
            image: busybox
            networks: [pub, own]
            secrets: [pw]
        networks:
          pub: {external: true, name: public-net}
          own: {name: exactly-this}
        secrets:
          pw: {external: true}
        """)
    (spec,) = to_service_specs(stack, "s")
    assert [n.target for n in spec.task.networks] == ["exactly-this", "public-net"]
    assert spec.task.container.secrets[0].secret_name == "pw"
    assert [n.annotations.name for n in to_network_specs(stack, "s")] == ["exactly-this"]
    assert external_names(stack) == {"networks": ["public-net"], "volumes": [], "secrets": ["pw"], "configs": []}


def test_env_files_and_secret_files_are_read_relative_to_the_project_dir(tmp_path):
    # Read as docker stack deploy reads it (opts.ParseEnvFile): quotes are part of the value.
    (tmp_path / "app.env").write_text("# comment\nA=from-file\nB='quoted'\n  C=3 \nD\n")
    (tmp_path / "pw.txt").write_bytes(b"s3cret\n")
    stack = load("""\
        services:
          web:
            image: busybox
            env_file: [app.env]
            environment: {A: override}
            secrets: [pw]
        secrets:
          pw: {file: ./pw.txt}
        """, {"D": "from-env"}, project_dir=str(tmp_path))
    assert stack.services["web"].environment == {"A": "override", "B": "'quoted'", "C": "3 ", "D": "from-env"}
    assert stack.secrets["pw"].data == b"s3cret\n"


def test_env_file_with_export_is_refused_as_docker_refuses_it(tmp_path):
    (tmp_path / "app.env").write_text("A=1\nexport C=3\n")
    with pytest.raises(StackFileError, match=r"services.web.env_file: app.env: line 2: poorly formatted "
                                             r"environment: variable 'export C' contains whitespaces"):
        load("""\
            services:
              web:
                image: busybox
                env_file: app.env
            """, project_dir=str(tmp_path))


def test_missing_env_file_names_the_line(tmp_path):
    with pytest.raises(StackFileError, match=r"web.yml:4: services.web.env_file: cannot read nope.env"):
        load("services:\n  web:\n    image: busybox\n    env_file: nope.env\n", project_dir=str(tmp_path))


def test_unset_variables_become_empty_and_are_reported():
    stack = load("services:\n  web:\n    image: busybox\n    hostname: h$UNSET\n")
    assert stack.services["web"].hostname == "h" and stack.missing_variables == ("UNSET",)


def test_invalid_stack_names_are_refused():
    from shoal.stack import StackError
    stack = load("services:\n  web:\n    image: busybox\n")
    with pytest.raises(StackError, match="invalid stack name"):
        to_service_specs(stack, "bad name")


# ---- merging several files ----------------------------------------------------------------------

def test_files_merge_in_order_with_compose_rules():
    base = textwrap.dedent("""\
        services:
          web:
            image: busybox:1
            command: ["a", "b"]
            environment: [A=1, B=2]
            ports: ["8080:80", "9090:90"]
            volumes: ["/srv/a:/data", "/srv/logs:/logs"]
            cap_add: [NET_ADMIN]
            deploy:
              replicas: 2
              labels: [x=1]
        """)
    override = textwrap.dedent("""\
        services:
          web:
            image: busybox:2
            command: ["c"]
            environment: {B: "3", C: "4"}
            ports: ["8080:80", {target: 90, published: 9191}]
            volumes: ["/srv/b:/data"]
            cap_add: [SYS_TIME, NET_ADMIN]
            deploy:
              labels: {y: "2"}
          worker:
            image: busybox
            deploy: {replicas: lots}
        """)
    with pytest.raises(StackFileError) as info:
        load_stack_sources([("base.yml", base), ("override.yml", override)], {})
    assert [str(p) for p in info.value.problems] == [
        "override.yml:13: services.worker.deploy.replicas: expected an integer, got 'lots'"]

    override = override.replace("lots", "1")
    stack = load_stack_sources([("base.yml", base), ("override.yml", override)], {})
    web = stack.services["web"]
    assert web.image == "busybox:2" and web.command == ("c",)
    assert web.environment == {"A": "1", "B": "3", "C": "4"}
    assert [(p.published, p.target) for p in web.ports] == [(8080, 80), (9090, 90), (9191, 90)]
    assert [(m.source, m.target) for m in web.mounts] == [("/srv/b", "/data"), ("/srv/logs", "/logs")]
    assert web.cap_add == ("NET_ADMIN", "SYS_TIME")
    assert web.deploy.replicas == 2 and web.deploy.labels == {"x": "1", "y": "2"}


def test_long_port_syntax_replaces_the_same_short_port_when_merging():
    base = "services:\n  web:\n    image: busybox\n    ports: ['8080:80']\n"
    override = "services:\n  web:\n    ports: [{target: 80, published: 8080, protocol: tcp, mode: ingress, name: http}]\n"
    stack = load_stack_sources([("a.yml", base), ("b.yml", override)], {})
    assert [(p.published, p.target, p.name) for p in stack.services["web"].ports] == [(8080, 80, "http")]


# ---- interpolation ------------------------------------------------------------------------------

@pytest.mark.parametrize("template, env, expected", [
    ("${VAR}", {"VAR": "x"}, "x"),
    ("$VAR/y", {"VAR": "x"}, "x/y"),
    ("${VAR:-default}", {}, "default"),
    ("${VAR:-default}", {"VAR": ""}, "default"),
    ("${VAR-default}", {"VAR": ""}, ""),
    ("${VAR-default}", {}, "default"),
    # docker stack deploy's rules: a default is literal up to the first '}' (no nesting, '$' kept),
    # a bare $VAR-x has a default too, and there is no '+' operator
    ("$$VAR costs $$5", {"VAR": "x"}, "$VAR costs $5"),
    ("${VAR:-a$b}", {}, "a$b"),
    ("${PASS:-pa$$word}", {}, "pa$$word"),
    ("${A:-${B:-nested}}", {}, "${B:-nested}"),
    ("$HOME-dir", {"HOME": "/root"}, "/root"),
    ("${var}", {"var": "lower"}, "lower"),
    ("${REGISTRY:-127.0.0.1:5000}/shoal/busybox:latest", {}, "127.0.0.1:5000/shoal/busybox:latest"),
])
def test_interpolation(template, env, expected):
    assert interpolate(template, env) == expected


@pytest.mark.parametrize("template, env, fragment", [
    ("${VAR:?must be set}", {"VAR": ""}, "required variable VAR is missing a value: must be set"),
    ("${VAR?}", {}, "required variable VAR"),
    ("${VAR", {}, "invalid interpolation format"),
    ("${1A}", {}, "invalid interpolation format"),
    ("$ alone", {}, "invalid interpolation format"),
    ("${VAR:x}", {}, "invalid interpolation format"),
    ("${VAR:+set}", {"VAR": "x"}, "invalid interpolation format"),
])
def test_interpolation_errors(template, env, fragment):
    with pytest.raises(InterpolationError, match=fragment.replace("$", r"\$").replace("?", r"\?")):
        interpolate(template, env)


# ---- the shipped examples -----------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(EXAMPLES, "*.yml"))),
                         ids=os.path.basename)
def test_examples_load_and_convert(path):
    stack = load_stack([path], {})
    specs = to_service_specs(stack, "example")
    assert specs and all(s.annotations.name.startswith("example_") for s in specs)
    assert all(s.task.container.image == "127.0.0.1:5000/shoal/busybox:latest" for s in specs)
    assert stack.missing_variables == ()


def test_keys_docker_ignores_are_ignored_with_dockers_warnings():
    stack = load("""\
        services:
          web:
            image: busybox
            build: .
            container_name: web1
            privileged: true
            links: [db]
            expose: ["80"]
            network_mode: host
            logging:
              driver: json-file
              options: {max-size: 10m, max-file: "3"}
          db:
            image: busybox
            security_opt: [label=disable]
            logging:
              options: {max-size: 200k, compress: "true"}
        """)
    assert stack.warnings() == [
        "Ignoring unsupported options: build, links, logging.options.compress, network_mode, privileged, "
        "security_opt\n",
        "Ignoring deprecated options:\n\ncontainer_name: Setting the container name is not supported.\n"
        "expose: Exposing ports is unnecessary - services on the same network can access each other's "
        "containers on any port.\n"]
    spec = {s.annotations.name: s for s in to_service_specs(stack, "app")}["app_web"]
    assert spec.task.container.hostname == "" and not spec.task.container.cap_add


@pytest.mark.parametrize("restart, condition, attempts", [
    ("always", pb.RestartPolicy.ANY, 0), ("unless-stopped", pb.RestartPolicy.ANY, 0),
    ("on-failure", pb.RestartPolicy.ON_FAILURE, 0), ("on-failure:3", pb.RestartPolicy.ON_FAILURE, 3),
])
def test_restart_becomes_the_restart_policy_as_docker_converts_it(restart, condition, attempts):
    stack = load(f"services:\n  web:\n    image: busybox\n    restart: {restart}\n")
    assert stack.warnings() == ["Ignoring unsupported options: restart\n"]
    [spec] = to_service_specs(stack, "app")
    assert (spec.task.restart.condition, spec.task.restart.max_attempts, spec.task.restart.delay) == \
        (condition, attempts, 5.0)
    assert spec.annotations.name == "app_web" and [a.target for a in spec.task.networks] == ["app_default"]
    both = load("services:\n  web:\n    image: busybox\n    restart: always\n"
                "    deploy: {restart_policy: {condition: none}}\n")
    assert to_service_specs(both, "app")[0].task.restart.condition == pb.RestartPolicy.NONE
    assert not to_service_specs(load("services:\n  web:\n    image: busybox\n    restart: 'no'\n"),
                                "app")[0].task.HasField("restart")


def test_a_stack_file_from_standard_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pw.txt").write_text("s3cret")
    stack = load_stack(["-"], {}, stdin=lambda: "services:\n  web:\n    image: busybox\n    secrets: [pw]\n"
                                                 "secrets:\n  pw: {file: ./pw.txt}\n")
    assert list(stack.services) == ["web"] and stack.secrets["pw"].data == b"s3cret"
    with pytest.raises(StackFileError, match=r"<stdin>:3: services.web.bogus: unknown key"):
        load_stack(["-"], {}, stdin=lambda: "services:\n  web:\n    bogus: 1\n    image: busybox\n")


def test_stack_config_prints_the_merged_interpolated_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from shoal.cli.stacks import stack_config
    (tmp_path / "a.yml").write_text("services:\n  web:\n    image: ${IMAGE:-busybox}\n    environment: {A: '1'}\n")
    (tmp_path / "b.yml").write_text("services:\n  web:\n    environment: {B: '2'}\n")
    monkeypatch.delenv("IMAGE", raising=False)
    result = CliRunner().invoke(stack_config, ["-c", str(tmp_path / "a.yml"), "-c", str(tmp_path / "b.yml")])
    assert result.exit_code == 0, result.output
    assert result.output == "services:\n  web:\n    image: busybox\n    environment:\n      A: '1'\n      B: '2'\n"
    raw = CliRunner().invoke(stack_config, ["--skip-interpolation", "-c", "-"], input="services: {web: {image: $X}}\n")
    assert raw.output == "services:\n  web:\n    image: $X\n"
