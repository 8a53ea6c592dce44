"""`--format` (common.gotemplate, shoal.cli.formatting) against outputs recorded from Docker:
the examples of the docker CLI reference (docs/reference/commandline/*.md) and the table cases of
docker/cli's own formatter tests (cli/command/service/formatter_test.go). Every case is one row of
a table: the objects, the format, the exact output."""

from __future__ import annotations

import json

import pytest

from proto import control_pb2, objects_pb2 as pb
from shoal.cli.formatting import header_name, print_objects, print_rows
from common.gotemplate import Fields, Template, TemplateError, go_string, render, tabwrite
from shoal.cli.output import print_table
from shoal.cli.service_format import ls_row, service_summary

# ---- rows as the ls/ps commands build them, from the docs' examples -------------------------------

SERVICES = [{"ID": "0zmvwuiu3vue", "Name": "a", "Mode": "replicated", "Replicas": "10/10", "Image": "x", "Ports": ""},
            {"ID": "fm6uf97exkul", "Name": "b", "Mode": "global", "Replicas": "5/5", "Image": "y", "Ports": ""}]
NODES = [{"Availability": "Active", "EngineVersion": "23.0.3", "Hostname": "swarm-manager1",
          "ID": "e216jshn25ckzbvmwlnh5jr3g", "ManagerStatus": "Leader", "Self": True, "Status": "Ready",
          "TLSStatus": "Ready"},
         {"Availability": "Active", "EngineVersion": "23.0.3", "Hostname": "swarm-worker1",
          "ID": "35o6tiywb700jesrt3dmllaza", "ManagerStatus": "", "Self": False, "Status": "Ready",
          "TLSStatus": "Needs Rotation"}]
TASKS = [{"ID": f"t{i}", "Name": f"top.{i}", "Image": "busybox", "Node": "n", "DesiredState": "Running",
          "CurrentState": "Running 1 second ago", "Error": "", "Ports": ""} for i in (1, 2, 3)]
SECRETS = [{"ID": i, "Name": n, "Driver": "", "Labels": "", "CreatedAt": "5 minutes ago", "UpdatedAt": "5 minutes ago"}
           for i, n in (("77af4d6b9913", "secret-1"), ("b6fa739cedf5", "secret-2"), ("78a85c484f71", "secret-3"))]
NETWORKS = [{"ID": i, "Name": n, "Driver": d, "Scope": "local", "IPv6": "false", "Internal": "false", "Labels": "",
             "CreatedAt": "2021-03-09 21:41:29.798999529 +0000 UTC"}
            for i, n, d in (("afaaab448eb2", "bridge", "bridge"), ("d1584f8dc718", "host", "host"),
                            ("391df270dc66", "none", "null"))]
STACKS = [{"Name": "web-server", "Namespace": "", "Orchestrator": "Swarm", "Services": "1"},
          {"Name": "web-cache", "Namespace": "", "Orchestrator": "Swarm", "Services": "4"}]
STACK_SERVICES = [{"ID": "0axqbl293vwm", "Image": "localstack/localstack:latest", "Mode": "replicated",
                   "Name": "myapp_localstack", "Ports": "*:4566->4566/tcp, *:8080->8080/tcp", "Replicas": "0/1"}]
VOLUMES = [{"Driver": "local", "Name": n, "Mountpoint": "", "CreatedAt": "", "Labels": "", "Scope": "local"}
           for n in ("vol1", "vol2", "vol3")]
IMAGES = [{"ID": "77af4d6b9913", "Repository": "<none>", "Tag": "<none>"},
          {"ID": "b6fa739cedf5", "Repository": "committ", "Tag": "latest"}]

ROWS = [
    # docker service ls --format "{{.ID}}: {{.Mode}} {{.Replicas}}"
    (SERVICES, "{{.ID}}: {{.Mode}} {{.Replicas}}", "0zmvwuiu3vue: replicated 10/10\nfm6uf97exkul: global 5/5\n"),
    # docker service ls --format json
    ([{"ID": "ssniordqolsi", "Name": "hello", "Mode": "replicated", "Replicas": "0/1", "Image": "hello-world:latest",
       "Ports": ""}], "json",
     '{"ID":"ssniordqolsi","Image":"hello-world:latest","Mode":"replicated","Name":"hello","Ports":"","Replicas":"0/1"}\n'),
    # docker node ls --format "{{.ID}}: {{.Hostname}} {{.TLSStatus}}"
    (NODES, "{{.ID}}: {{.Hostname}} {{.TLSStatus}}",
     "e216jshn25ckzbvmwlnh5jr3g: swarm-manager1 Ready\n35o6tiywb700jesrt3dmllaza: swarm-worker1 Needs Rotation\n"),
    # docker node ls --format json
    (NODES[:1], "json", '{"Availability":"Active","EngineVersion":"23.0.3","Hostname":"swarm-manager1",'
                        '"ID":"e216jshn25ckzbvmwlnh5jr3g","ManagerStatus":"Leader","Self":true,"Status":"Ready",'
                        '"TLSStatus":"Ready"}\n'),
    # docker service ps --format "{{.Name}}: {{.Image}}" top   (and docker node ps)
    (TASKS, "{{.Name}}: {{.Image}}", "top.1: busybox\ntop.2: busybox\ntop.3: busybox\n"),
    # docker secret ls --format "{{.ID}}: {{.Name}}"
    (SECRETS, "{{.ID}}: {{.Name}}", "77af4d6b9913: secret-1\nb6fa739cedf5: secret-2\n78a85c484f71: secret-3\n"),
    # docker secret ls --format json
    ([{"ID": "4y7hvwrt1u8e9uxh5ygqj7mzc", "Name": "mysecret", "Driver": "", "Labels": "",
       "CreatedAt": "28 seconds ago", "UpdatedAt": "28 seconds ago"}], "json",
     '{"CreatedAt":"28 seconds ago","Driver":"","ID":"4y7hvwrt1u8e9uxh5ygqj7mzc","Labels":"","Name":"mysecret",'
     '"UpdatedAt":"28 seconds ago"}\n'),
    # docker network ls --format "{{.ID}}: {{.Driver}}"
    (NETWORKS, "{{.ID}}: {{.Driver}}", "afaaab448eb2: bridge\nd1584f8dc718: host\n391df270dc66: null\n"),
    # docker network ls --format json
    (NETWORKS[:1], "json", '{"CreatedAt":"2021-03-09 21:41:29.798999529 +0000 UTC","Driver":"bridge",'
                           '"ID":"afaaab448eb2","IPv6":"false","Internal":"false","Labels":"","Name":"bridge",'
                           '"Scope":"local"}\n'),
    # docker stack ls --format "{{.Name}}: {{.Services}}" and --format json
    (STACKS, "{{.Name}}: {{.Services}}", "web-server: 1\nweb-cache: 4\n"),
    ([{"Name": "myapp", "Namespace": "", "Orchestrator": "Swarm", "Services": "3"}], "json",
     '{"Name":"myapp","Namespace":"","Orchestrator":"Swarm","Services":"3"}\n'),
    # docker stack services --format json: the row marshals itself, so ">" is \u003e
    (STACK_SERVICES, "json", '{"ID":"0axqbl293vwm","Image":"localstack/localstack:latest","Mode":"replicated",'
                             '"Name":"myapp_localstack","Ports":"*:4566-\\u003e4566/tcp, *:8080-\\u003e8080/tcp",'
                             '"Replicas":"0/1"}\n'),
    # docker volume ls --format "{{.Name}}: {{.Driver}}"
    (VOLUMES, "{{.Name}}: {{.Driver}}", "vol1: local\nvol2: local\nvol3: local\n"),
    # docker images --format "{{.ID}}: {{.Repository}}"
    (IMAGES, "{{.ID}}: {{.Repository}}", "77af4d6b9913: <none>\nb6fa739cedf5: committ\n"),
    # formatting page: join, upper, lower, title, split, pad, truncate, println
    ([{"Names": ["a", "b"], "Name": "web"}], '{{join .Names " or "}}', "a or b\n"),
    ([{"Name": "Web-one"}], "{{upper .Name}} {{lower .Name}} {{title .Name}}", "WEB-ONE web-one Web-One\n"),
    ([{"Image": "ubuntu:latest"}], '{{split .Image ":"}}', "[ubuntu latest]\n"),
    ([{"Name": "web"}, {"Name": ""}], "[{{pad .Name 1 2}}]{{truncate .Name 2}}", "[ web  ]we\n[]\n"),
    ([{"Name": "web"}], "{{println .Name}}", "web\n\n"),
    # `\t` and `\n` typed in a format are a tab and a newline; leading/trailing spaces trimmed
    ([{"Name": "web", "Mode": "global"}], "  {{.Name}}\\t{{.Mode}}\\n  ", "web\tglobal\n\n"),
]


@pytest.mark.parametrize("rows, fmt, expected", ROWS)
def test_rows_print_as_docker_documents(capsys, rows, fmt, expected):
    print_rows(fmt, rows, "*formatter.test", default=lambda: pytest.fail("not the default table"))
    assert capsys.readouterr().out == expected


# ---- docker/cli's service formatter test: the same services, the same bytes -------------------------

def _service(sid, name, mode, running, desired, completed=0, max_replicas=0, replicas=0, port=None):
    service = pb.Service(id=sid)
    service.spec.annotations.name = name
    service.spec.mode = mode
    service.spec.replicas = replicas
    service.spec.task.placement.max_replicas = max_replicas
    if port:
        service.endpoint.ports.append(pb.PortConfig(publish_mode=pb.PortConfig.INGRESS, published_port=80,
                                                    target_port=port[0], protocol=port[1]))
    status = control_pb2.ServiceStatus(running_tasks=running, desired_tasks=desired, completed_tasks=completed)
    return service, service_summary(service, status)


DOCKER_SERVICES = [
    _service("02_bar", "bar", pb.ServiceSpec.REPLICATED, 2, 4, port=(8090, pb.PortConfig.UDP)),
    _service("01_baz", "baz", pb.ServiceSpec.GLOBAL, 1, 3, port=(8080, pb.PortConfig.TCP)),
    _service("04_qux2", "qux2", pb.ServiceSpec.REPLICATED, 3, 3, max_replicas=2),
    _service("03_qux10", "qux10", pb.ServiceSpec.REPLICATED, 2, 3, max_replicas=1),
    _service("05_job1", "zarp1", pb.ServiceSpec.REPLICATED_JOB, 2, 3, completed=5, replicas=10),
    _service("06_job2", "zarp2", pb.ServiceSpec.GLOBAL_JOB, 1, 1, completed=3),
]
DOCKER_TABLE = """\
ID         NAME      MODE             REPLICAS               IMAGE     PORTS
02_bar     bar       replicated       2/4                              *:80->8090/udp
01_baz     baz       global           1/3                              *:80->8080/tcp
04_qux2    qux2      replicated       3/3 (max 2 per node)             
03_qux10   qux10     replicated       2/3 (max 1 per node)             
05_job1    zarp1     replicated job   2/3 (5/10 completed)             
06_job2    zarp2     global job       1/1 (3/4 completed)              
"""


def test_the_default_service_table_is_byte_for_byte_dockers(capsys):
    print_table(["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], [ls_row(s, row) for s, row in DOCKER_SERVICES])
    assert capsys.readouterr().out == DOCKER_TABLE


@pytest.mark.parametrize("fmt, expected", [
    ("table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}", DOCKER_TABLE),
    ("table {{.Name}}\t{{.Mode}}", "NAME      MODE\nbar       replicated\nbaz       global\nqux2      replicated\n"
                                   "qux10     replicated\nzarp1     replicated job\nzarp2     global job\n"),
    ("table {{.Name}}", "NAME\nbar\nbaz\nqux2\nqux10\nzarp1\nzarp2\n"),
    ("{{.Name}}", "bar\nbaz\nqux2\nqux10\nzarp1\nzarp2\n"),
])
def test_service_formats_as_docker_clis_formatter_test(capsys, fmt, expected):
    print_rows(fmt, [row for _, row in DOCKER_SERVICES], "*formatter.serviceContext", default=pytest.fail)
    assert capsys.readouterr().out == expected


@pytest.mark.parametrize("fmt, message", [
    ("{{InvalidFunction}}", 'template parsing error: template: :1: function "InvalidFunction" not defined'),
    ("{{nil}}", 'template parsing error: template: :1:2: executing "" at <nil>: nil is not a command'),
    ("{{.Bogus}}", 'template parsing error: template: :1:2: executing "" at <.Bogus>: can\'t evaluate field '
                   'Bogus in type *formatter.serviceContext'),
    ("{{.Name", "template parsing error: template: :1: unclosed action"),
    ("{{if .Name}}x", "template parsing error: template: :1: unexpected EOF"),
])
def test_a_bad_format_is_an_error_never_ignored(capsys, fmt, message):
    with pytest.raises(SystemExit) as exit_:
        print_rows(fmt, [row for _, row in DOCKER_SERVICES], "*formatter.serviceContext", default=pytest.fail)
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == message and captured.out == ""


# ---- inspect, info, version: Docker's documents -------------------------------------------------------

CONTAINER = {"Name": "/web", "Config": {"Image": "redis"},
             "NetworkSettings": {"Ports": {"8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "16381"}],
                                           "6379/tcp": None},
                                 "Networks": {"bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"}}}}


@pytest.mark.parametrize("obj, fmt, expected", [
    ({"Spec": {"Mode": {"Replicated": {"Replicas": 10}}}}, "{{.Spec.Mode.Replicated.Replicas}}", "10\n"),
    ({"ManagerStatus": {"Leader": False}}, "{{ .ManagerStatus.Leader }}", "false\n"),
    (CONTAINER, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.17.0.2\n"),
    (CONTAINER, "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", "02:42:ac:11:00:02\n"),
    (CONTAINER, "{{.Config.Image}}", "redis\n"),
    (CONTAINER, "{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{with $conf}}{{(index . 0).HostPort}}"
                "{{else}}none{{end}} {{end}}", " 6379/tcp -> none  8787/tcp -> 16381 \n"),
    (CONTAINER, '{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', "16381\n"),
    (CONTAINER, "{{json .Config}}", '{"Image":"redis"}\n'),
    (CONTAINER, "{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}", "172.17.0.2\n\n"),
    ({"Server": {"Version": "28.5.1"}}, "{{.Server.Version}}", "28.5.1\n"),
    ({"Swarm": {"LocalNodeState": "active"}}, "{{.Swarm.LocalNodeState}}", "active\n"),
])
def test_inspect_templates_as_docker_documents(capsys, obj, fmt, expected):
    print_objects(fmt, [obj])
    assert capsys.readouterr().out == expected


def test_inspect_without_a_format_is_an_indented_json_array_and_a_missing_key_is_an_error(capsys):
    print_objects("", [{"ID": "x"}])
    assert json.loads(capsys.readouterr().out) == [{"ID": "x"}]
    with pytest.raises(SystemExit):
        print_objects("{{.Spec.Nmae}}", [{"Spec": {"Name": "web"}}])
    assert capsys.readouterr().err.strip() == ('template parsing error: template: :1:2: executing "" at '
                                               '<.Spec.Nmae>: map has no entry for key "Nmae"')


# ---- the engine's Go semantics ------------------------------------------------------------------------

@pytest.mark.parametrize("source, data, expected", [
    ("{{if eq .A 1}}one{{else if eq .A 2}}two{{else}}many{{end}}", {"A": 2}, "two"),
    ("{{range $i, $e := .L}}{{$i}}={{$e}},{{else}}empty{{end}}", {"L": ["a", "b"]}, "0=a,1=b,"),
    ("{{range .L}}x{{else}}empty{{end}}", {"L": []}, "empty"),
    ("{{with .M}}{{.K}}{{else}}none{{end}}", {"M": {"K": "v"}}, "v"),
    ("{{with .M}}{{.K}}{{else}}none{{end}}", {"M": {}}, "none"),
    ("{{$x := .A}}{{$x = 5}}{{$x}}", {"A": 1}, "5"),
    ("{{- .A -}}  \n  {{- .A}}", {"A": 1}, "11"),
    ("a{{/* a comment */}}b", {}, "ab"),
    ("{{.A | printf \"%05d\"}}", {"A": 42}, "00042"),
    ("{{printf \"%s=%v %q\" .K .V .K}}", {"K": "k", "V": [1, 2]}, 'k=[1 2] "k"'),
    ("{{len .L}} {{index .L 1}} {{slice .L 1}}", {"L": [1, 2, 3]}, "3 2 [2 3]"),
    ("{{and .A .B}} {{or .A .B}} {{not .A}}", {"A": 1, "B": 0}, "0 1 false"),
    ("{{.M}} {{.L}} {{.N}} {{.F}} {{.T}}", {"M": {"b": 1, "a": 2}, "L": ["x", "y"], "N": None, "F": 0.5, "T": True},
     "map[a:2 b:1] [x y] <nil> 0.5 true"),
    ("{{range .L}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}", {"L": [1, 2, 3, 4, 5]}, "13"),
    ("{{print \"a\" 1 2 \"b\"}}", {}, "a1 2b"),
    ("{{`raw\\n`}}", {}, "raw\\n"),
    ("{{lt 1 2}} {{ge \"b\" \"a\"}} {{ne .A 1}}", {"A": 1}, "true true false"),
])
def test_go_template_semantics(source, data, expected):
    assert render(source, data) == expected


@pytest.mark.parametrize("source, data, message", [
    ("{{.A.B}}", {"A": "s"}, "can't evaluate field B in type string"),
    ("{{.A.B}}", {"A": None}, "nil pointer evaluating interface {}.B"),
    ("{{upper 1}}", {}, "wrong type for value; expected string; got int"),
    ("{{index .L 5}}", {"L": [1]}, "index out of range: 5"),
    ("{{eq 1 \"a\"}}", {}, "incompatible types for comparison"),
    ("{{$y}}", {}, "undefined variable: $y"),
    ("{{template \"x\"}}", {}, "not supported"),
    ("{{end}}", {}, "unexpected {{end}}"),
    ("{{range .L}}{{end}}", {"L": "s"}, "range can't iterate over s"),
    ("{{.A 1}}", {"A": 1}, "can't give argument to non-function .A"),
])
def test_go_template_errors_name_the_problem(source, data, message):
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")
                       .replace("}", r"\}").replace("$", r"\$")):
        render(source, data)


def test_header_names_and_tabwriter():
    assert [header_name(f) for f in ("ID", "DesiredState", "TLSStatus", "CreatedAt", "Name")] == \
        ["ID", "DESIRED STATE", "TLS STATUS", "CREATED AT", "NAME"]
    # Go's elastic tabstops: a column block ends where a line has fewer cells
    assert tabwrite("a\tb\tc\nlonger-than-ten\td\ne\n") == "a                 b         c\nlonger-than-ten   d\ne\n"
    assert go_string(1e6) == "1e+06" and go_string(100000.0) == "100000" and go_string(1.5e-5) == "1.5e-05"
    assert Template("{{json .}}").execute(Fields("t", {"b": "<", "a": 1})) == '{"a":1,"b":"\\u003c"}'


def test_info_and_version_documents_have_dockers_names(capsys):
    from shoal.cli.system import info_document, version_document
    info = control_pb2.InfoResponse(node_id="n1", local_node_state="active", control_available=True,
                                    hostname="m1", engine_version="0.1.0", cluster_id="c1", nodes=2,
                                    managers_count=1, managers=[control_pb2.RaftMember(node_id="n1", raft_addr="a:1")])
    print_objects("{{.Name}} {{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}} "
                  "{{.Swarm.Cluster.ID}} {{(index .Swarm.RemoteManagers 0).Addr}}", [info_document(info)], array=False)
    print_objects("{{.Client.Version}} {{.Server.Version}}", [version_document("0.1.0")], array=False)
    from shoal import __version__                      # the client's own version, the server's given
    assert capsys.readouterr().out == f"m1 active true 2 c1 a:1\n{__version__} 0.1.0\n"
    assert info_document(info)["localNodeState"] == "active"     # Shoal's own fields stay, in camelCase


def test_service_ps_orders_as_docker_newest_first_per_slot_wherever_it_ran():
    """After a start-first update the slot's new task runs on another node: it heads the slot
    (before, ordering by node first made the Shutdown task the `web.1` row)."""
    from shoal.cli.service_format import task_rows
    service = pb.Service(id="s1")
    service.spec.annotations.name = "web"

    def task(tid, slot, node, created, state=pb.RUNNING):
        t = pb.Task(id=tid, service_id="s1", slot=slot, node_id=node, desired_state=state)
        t.meta.created_at = created
        t.status.state = state
        return t
    tasks = [task("old1", 1, "aaa", 10, pb.SHUTDOWN), task("new1", 1, "zzz", 20),
             task("t10", 10, "aaa", 5), task("t2", 2, "bbb", 5)]
    rows = task_rows(tasks, {"s1": service}, {"aaa": "n-a", "zzz": "n-z", "bbb": "n-b"}, now=30)
    assert [(r["ID"], r["Name"]) for r in rows] == [("new1", "web.1"), ("old1", " \\_ web.1"), ("t2", "web.2"),
                                                   ("t10", "web.10")]
    glob = pb.Service(id="g1")
    glob.spec.annotations.name = "agent"
    rows = task_rows([pb.Task(id="g", service_id="g1", node_id="aaa")], {"g1": glob}, {"aaa": "node-a"}, now=1)
    assert (rows[0]["Name"], rows[0]["Node"]) == ("agent.aaa", "node-a")   # docker: SERVICE.NODEID


@pytest.mark.parametrize("created,shown", [
    ("1970-01-01T00:00:00Z", "56 years ago"),          # a reproducible image: docker shows the same
    ("", "56 years ago"),                              # no date: docker's Created 0
    ("2026-12-03T11:59:59Z", "1 second ago"),
    ("2026-12-03T11:00:00.123456789Z", "About an hour ago"),
    ("2026-12-02T12:00:00+00:00", "24 hours ago"),
    ("2026-11-30T12:00:00Z", "3 days ago"),
])
def test_images_created_since_as_docker(created, shown):
    import datetime as dt

    from shoal.cli.images import human_since
    now = dt.datetime(2026, 12, 3, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert human_since(created, now) == shown
