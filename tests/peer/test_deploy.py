"""The deployment examples in deploy/, read the way their tools read them.

The Kubernetes manifests (the agent alone, and as a Flink JobManager's
sidecar) are parsed as YAML and the ECS task definition as
JSON; both must use the documented mount points (/etc/flinkscale for the
configuration, /var/lib/flinkscale for the state), run as the image's
unprivileged user, and check health on the port the embedded configuration
listens on (/livez, /readyz). The configurations they carry must pass the
real `flinkscale validate` (FLINKSCALE_BIN, set by scripts/test.sh). The
systemd unit and the image itself are run by host/tests/deploy.rs.
"""

import json
import os
import pathlib
import subprocess
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = os.environ.get("FLINKSCALE_BIN", str(ROOT / "target/debug/flinkscale"))
CONFIG_DIR = "/etc/flinkscale"
STATE_DIR = "/var/lib/flinkscale"


def validate(text, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(text)
    done = subprocess.run(
        [BIN, "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return tomllib.loads(text)


def listen_port(config):
    return int(config["agent"]["listen"].rsplit(":", 1)[1])


def test_kubernetes_manifest(tmp_path):
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes/flinkscale.yaml").read_text()))
    by_kind = {doc["kind"]: doc for doc in docs}
    assert set(by_kind) == {"ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Deployment"}
    config = validate(by_kind["ConfigMap"]["data"]["config.toml"], tmp_path)
    port = listen_port(config)

    deployment = by_kind["Deployment"]["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"]["type"] == "Recreate"
    pod = deployment["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert_state_survives_remounts(pod)
    [container] = pod["containers"]
    assert container["args"] == ["run", "--config", f"{CONFIG_DIR}/config.toml"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {CONFIG_DIR: "config", STATE_DIR: "state"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"]
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    assert claim == by_kind["PersistentVolumeClaim"]["metadata"]["name"]
    assert pod["serviceAccountName"] == by_kind["ServiceAccount"]["metadata"]["name"]


def assert_state_survives_remounts(pod):
    """fsGroup changes the volume once, not at every mount (where it would
    make every compiled plugin group-writable, and refused)."""
    assert pod["securityContext"]["fsGroup"] == 65532
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


def test_ecs_task_definition(tmp_path):
    task = json.loads((DEPLOY / "ecs/task-definition.json").read_text())
    config = validate((DEPLOY / "ecs/config.toml").read_text(), tmp_path)
    port = listen_port(config)
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["taskRoleArn"].startswith("arn:aws:iam::")
    [container] = task["containerDefinitions"]
    assert container["user"] == "65532:65532"
    assert container["command"] == ["run", "--config", f"{CONFIG_DIR}/config.toml"]
    assert [p["containerPort"] for p in container["portMappings"]] == [port]
    assert container["healthCheck"]["command"] == [
        "CMD", "/usr/local/bin/flinkscale", "probe", f"http://127.0.0.1:{port}/livez"
    ]
    [mount] = container["mountPoints"]
    assert mount["containerPath"] == STATE_DIR and not mount["readOnly"]
    assert mount["sourceVolume"] in {v["name"] for v in task["volumes"]}
    # The configuration is baked into the image the task runs.
    containerfile = (DEPLOY / "ecs/Containerfile").read_text()
    assert f"COPY --chmod=0644 config.toml {CONFIG_DIR}/config.toml" in containerfile


def test_ec2_user_data_installs_the_unit_and_validates_first():
    script = DEPLOY / "ec2/user-data.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "/etc/systemd/system/flinkscale.service" in text
    assert text.index("flinkscale validate") < text.index("systemctl enable --now")
    unit = (DEPLOY / "systemd/flinkscale.service").read_text()
    assert f"--config {CONFIG_DIR}/config.toml" in unit


def test_the_iam_policy_file_is_the_one_the_readme_documents():
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## IAM permissions", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    assert policy == json.loads(block)


def test_flink_sidecar_runs_beside_the_jobmanager(tmp_path):
    docs = list(yaml.safe_load_all((DEPLOY / "flink-sidecar/flink-session-cluster.yaml").read_text()))
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}
    flink_conf = yaml.safe_load(by_name[("ConfigMap", "flink-jobmanager-config")]["data"]["config.yaml"])
    assert flink_conf["jobmanager.scheduler"] == "adaptive"
    config = validate(by_name[("ConfigMap", "flinkscale-config")]["data"]["config.toml"], tmp_path)
    [app] = config["application"]
    assert app["target"] == "flink"
    assert app["rest_url"] == f"http://localhost:{flink_conf['rest.port']}"
    assert "region" not in config["agent"]

    pod = by_name[("Deployment", "flink-jobmanager")]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"jobmanager", "flinkscale"}
    assert {p["containerPort"] for p in containers["jobmanager"]["ports"]} >= {flink_conf["rest.port"]}
    sidecar = containers["flinkscale"]
    assert_state_survives_remounts(pod)
    # The Service the JobManager's rpc address names, over its pods.
    service = by_name[("Service", flink_conf["jobmanager.rpc.address"])]
    labels = by_name[("Deployment", "flink-jobmanager")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["port"] for p in service["spec"]["ports"]} == {
        6123, flink_conf["blob.server.port"], flink_conf["rest.port"]
    }
    assert sidecar["args"] == ["run", "--config", f"{CONFIG_DIR}/config.toml"]
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert {p["name"]: p["containerPort"] for p in sidecar["ports"]}["http"] == listen_port(config)
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/livez"
    # Not ready would take the JobManager's pod out of its Service.
    assert "readinessProbe" not in sidecar
    annotations = by_name[("Deployment", "flink-jobmanager")]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(listen_port(config))
    mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
    assert mounts == {CONFIG_DIR: "config", STATE_DIR: "state"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "flinkscale-config"
    assert volumes["flink-config"]["configMap"]["name"] == "flink-jobmanager-config"
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "flinkscale-state"
    assert ("PersistentVolumeClaim", "flinkscale-state") in by_name


def test_flink_ec2_agent_reaches_the_cluster_on_loopback(tmp_path):
    config = validate((DEPLOY / "flink-ec2/config.toml").read_text(), tmp_path)
    [app] = config["application"]
    assert app["target"] == "flink"
    assert app["rest_url"].startswith("http://127.0.0.1:")
    unit = (DEPLOY / "flink-ec2/flinkscale.service").read_text()
    assert f"ExecStart=/usr/local/bin/flinkscale run --config {CONFIG_DIR}/config.toml" in unit
    # `run` refuses a bad file itself (exit 78); a failing ExecStartPre
    # would escape RestartPreventExitStatus=78 and restart for good.
    assert not [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    assert "RestartPreventExitStatus=78" in unit
    assert "IPAddressAllow=localhost" in unit
    # Nothing in it calls AWS, and `iam` says so.
    path = tmp_path / "config.toml"
    path.write_text((DEPLOY / "flink-ec2/config.toml").read_text())
    done = subprocess.run([BIN, "iam", "--config", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "needs no IAM policy" in done.stderr


def readme_alert_expressions():
    """The PromQL of each row of the README's alert table ("Health, metrics
    and alerts"): the row's second cell, in backquotes."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Health, metrics and alerts", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    expressions = []
    for row in rows:
        cell = row.split(" | ")[1]
        # The first backquoted expression of the cell.
        expressions.append(cell.split("`")[1])
    return expressions


def test_the_alert_rules_are_the_readmes_table():
    doc = yaml.safe_load((DEPLOY / "prometheus/flinkscale-rules.yml").read_text())
    [group] = doc["groups"]
    rules = group["rules"]
    names = [rule["alert"] for rule in rules]
    assert len(set(names)) == len(names), names
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["annotations"]["summary"], rule
    table = readme_alert_expressions()
    assert len(table) >= 10, table
    assert [rule["expr"] for rule in rules] == table
    # A moment's 0 of readiness (plugins loading at start) is no alert.
    assert rules[0]["expr"] == "flinkscale_ready == 0" and rules[0]["for"] == "5m"

