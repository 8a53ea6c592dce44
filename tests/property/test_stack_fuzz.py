"""Hypothesis: whatever the stack files contain, the loader either returns a StackSpec (which
converts to specs) or raises StackFileError whose problems all name a file, a line and a message —
never any other exception."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.stack import StackFileError, load_stack_sources, to_network_specs, to_service_specs

SERVICE_KEYS = ["image", "command", "entrypoint", "environment", "env_file", "ports", "networks",
                "volumes", "tmpfs", "deploy", "healthcheck", "hostname", "user", "working_dir",
                "stop_grace_period", "stop_signal", "labels", "cap_add", "cap_drop", "secrets",
                "configs", "depends_on", "init", "build", "x-note", "imag"]
DEPLOY_KEYS = ["mode", "replicas", "resources", "restart_policy", "update_config", "rollback_config",
               "placement", "labels", "endpoint_mode", "limits", "reservations", "cpus", "memory",
               "condition", "delay", "parallelism", "order", "constraints", "preferences", "spread",
               "max_replicas_per_node", "target", "published", "source", "type", "read_only",
               "aliases", "test", "interval", "retries", "disable", "external", "name", "file",
               "content", "ipam", "config", "subnet", "gateway"]
NAMES = ["web", "db", "default", "data", "pw", "Bad Name", "x-ext"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-70000, 70000), st.integers(), st.floats(),
    st.sampled_from(["busybox", "8080:80", "80", "1-2:3-4/udp", "10s", "1m30s", "64M", "0.5", "0440",
                     "/data", "data:/data:ro", "./x:/y", "node.role==manager", "global", "replicated",
                     "${VAR:-x}", "$$", "${", "$1", "CMD-SHELL", "KEY=VALUE", "web", "db", "", "tcp",
                     "ingress", "host", "start-first", "rollback", "on-failure", "service_healthy", "²",
                     "99999999999999999999P", "1e400", ".nan"]),
    st.text(max_size=12))


def values(depth: int):
    if depth <= 0:
        return scalars
    child = values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(child, max_size=3),
        st.dictionaries(st.sampled_from(DEPLOY_KEYS + SERVICE_KEYS + NAMES), child, max_size=4))


services = st.dictionaries(
    st.sampled_from(NAMES),
    st.one_of(st.none(), scalars, st.dictionaries(st.sampled_from(SERVICE_KEYS), values(3), max_size=6)),
    max_size=3)

documents = st.fixed_dictionaries(
    {"services": services},
    optional={"networks": st.dictionaries(st.sampled_from(NAMES), values(2), max_size=2),
              "volumes": st.dictionaries(st.sampled_from(NAMES), values(2), max_size=2),
              "secrets": st.dictionaries(st.sampled_from(NAMES), values(2), max_size=2),
              "configs": st.dictionaries(st.sampled_from(NAMES), values(2), max_size=2),
              "version": scalars, "bogus": scalars})


def sometimes(good, depth: int = 1):
    """Mostly a well-formed value, sometimes anything: reaches the deep validators."""
    return st.integers(0, 24).flatmap(lambda n: values(depth) if n == 0 else good)


durations = sometimes(st.sampled_from(["10s", "1m30s", "500ms", "0"]))
plausible_deploy = st.fixed_dictionaries({}, optional={
    "mode": sometimes(st.sampled_from(["replicated", "global", "replicated-job", "global-job"])),
    "replicas": sometimes(st.integers(0, 5)),
    "endpoint_mode": sometimes(st.sampled_from(["vip", "dnsrr"])),
    "labels": sometimes(st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "x"]))),
    "resources": sometimes(st.fixed_dictionaries({}, optional={
        "limits": sometimes(st.fixed_dictionaries({}, optional={
            "cpus": sometimes(st.sampled_from(["0.5", "2", 1])), "memory": sometimes(st.sampled_from(["64M", "1g"])),
            "pids": sometimes(st.integers(0, 100))})),
        "reservations": sometimes(st.fixed_dictionaries({}, optional={"cpus": sometimes(st.just("0.25"))}))})),
    "restart_policy": sometimes(st.fixed_dictionaries({}, optional={
        "condition": sometimes(st.sampled_from(["none", "on-failure", "any"])), "delay": durations,
        "max_attempts": sometimes(st.integers(0, 5)), "window": durations})),
    "update_config": sometimes(st.fixed_dictionaries({}, optional={
        "parallelism": sometimes(st.integers(0, 3)), "delay": durations, "monitor": durations,
        "failure_action": sometimes(st.sampled_from(["pause", "continue", "rollback"])),
        "max_failure_ratio": sometimes(st.floats(0, 1)), "order": sometimes(st.sampled_from(["start-first", "stop-first"]))})),
    "placement": sometimes(st.fixed_dictionaries({}, optional={
        "constraints": sometimes(st.lists(st.sampled_from(["node.role==manager", "node.labels.a!=b", "x"]), max_size=2)),
        "preferences": sometimes(st.lists(st.fixed_dictionaries({"spread": st.just("node.labels.zone")}), max_size=1)),
        "max_replicas_per_node": sometimes(st.integers(0, 3))})),
})
port = st.one_of(st.sampled_from(["80", "8080:80", "9000-9001:90-91/udp", 443]),
                 st.fixed_dictionaries({"target": st.integers(1, 65535)}, optional={
                     "published": st.integers(0, 65535), "mode": st.sampled_from(["ingress", "host"]),
                     "protocol": st.sampled_from(["tcp", "udp"])}))
volume = st.one_of(st.sampled_from(["data:/data", "/srv:/srv:ro", "./rel:/rel", "/anon"]),
                   st.fixed_dictionaries({"type": st.sampled_from(["bind", "volume", "tmpfs"]),
                                          "target": st.sampled_from(["/t", "/u"])},
                                         optional={"source": st.sampled_from(["data", "/srv"]),
                                                   "tmpfs": st.just({"size": "1m"})}))
plausible_service = st.fixed_dictionaries({"image": sometimes(st.sampled_from(["busybox", "a/b:1"]))}, optional={
    "command": sometimes(st.one_of(st.just("echo hi"), st.lists(st.sampled_from(["sh", "-c", "x"]), max_size=3))),
    "environment": sometimes(st.one_of(st.lists(st.sampled_from(["A=1", "B", "VAR"]), max_size=3),
                                       st.dictionaries(st.sampled_from(["A", "B"]), st.sampled_from(["1", None, True])))),
    "ports": sometimes(st.lists(port, max_size=3)),
    "volumes": sometimes(st.lists(volume, max_size=3)),
    "networks": sometimes(st.one_of(st.lists(st.sampled_from(["front", "default"]), max_size=2, unique=True),
                                    st.just({"front": {"aliases": ["f"]}}))),
    "deploy": sometimes(plausible_deploy),
    "healthcheck": sometimes(st.fixed_dictionaries({}, optional={
        "test": st.sampled_from(["true", ["CMD", "true"], ["NONE"]]), "interval": durations,
        "retries": st.integers(0, 3), "disable": st.booleans()})),
    "depends_on": sometimes(st.one_of(st.lists(st.sampled_from(["web", "db", "worker"]), max_size=2, unique=True),
                                      st.just({"db": {"condition": "service_healthy"}}))),
    "secrets": sometimes(st.lists(st.sampled_from(["pw", {"source": "pw", "mode": 256}]), max_size=2)),
    "stop_grace_period": durations,
})
plausible_documents = st.fixed_dictionaries({
    "services": st.dictionaries(st.sampled_from(["web", "db", "worker"]), plausible_service, min_size=1, max_size=3),
    "networks": st.just({"front": {"attachable": True}}),
    "volumes": st.just({"data": None}),
    "secrets": st.just({"pw": {"environment": "VAR"}}),
})


def check(sources: list[tuple[str, str]], tmp_dir: str) -> None:
    try:
        stack = load_stack_sources(sources, {"VAR": "v"}, project_dir=tmp_dir)
    except StackFileError as exc:
        assert exc.problems
        names = {name for name, _ in sources}
        for problem in exc.problems:
            assert problem.message
            assert problem.file in names or problem.file.startswith(tmp_dir)
        return
    to_service_specs(stack, "fuzz")
    to_network_specs(stack, "fuzz")


COMMON = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])


@COMMON
@given(document=documents)
def test_generated_documents_never_crash_the_loader(document, tmp_path):
    check([("gen.yml", yaml.safe_dump(document, sort_keys=False))], str(tmp_path))


@settings(COMMON, max_examples=300)
@given(document=plausible_documents)
def test_plausible_documents_load_or_fail_cleanly(document, tmp_path):
    check([("plausible.yml", yaml.safe_dump(document, sort_keys=False))], str(tmp_path))


@COMMON
@given(first=st.one_of(documents, plausible_documents), second=st.one_of(documents, plausible_documents))
def test_generated_documents_merge_without_crashing(first, second, tmp_path):
    check([("a.yml", yaml.safe_dump(first)), ("b.yml", yaml.safe_dump(second))], str(tmp_path))


@COMMON
@given(text=st.text(alphabet=st.sampled_from(list("services:web image-[]{}&*!|>'\"#\n $x<,0123456789")),
                    max_size=120))
def test_arbitrary_text_never_crashes_the_loader(text, tmp_path):
    check([("noise.yml", text)], str(tmp_path))
