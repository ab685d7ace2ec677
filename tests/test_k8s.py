"""deploy/k8s stays valid Kubernetes and consistent with the code (no cluster here to apply it).

The core objects are validated with kubernetes-validate against the Kubernetes JSON schemas it
ships (strict: an unknown field fails). KEDA's objects are custom resources those schemas do not
know: they are checked against models of KEDA's CRD fields below (extra fields refused), and
against what the code says the queues are called.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.base import get_role
from coordinator.engine.specs import builtin_workflow, builtin_workflows
from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE, priority_lists
from proj.settings import Settings
from tests.test_deploy import built_in_roles

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
# The oldest Kubernetes release the manifests are checked against; kubernetes-validate ships its schemas.
KUBERNETES_VERSION = "1.30.0"
# Seconds a worker needs after a step's hard time limit to store the result and send the successors.
SHUTDOWN_MARGIN_S = 30
KEDA_API = "keda.sh/v1alpha1"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedisListTrigger(Strict):
    """KEDA's ``redis`` scaler metadata, as agentchord uses it (one list per trigger)."""

    listName: str
    listLength: str = Field(pattern=r"^[1-9][0-9]*$")
    databaseIndex: str = Field(pattern=r"^[0-9]+$")


class AuthenticationRef(Strict):
    name: str
    kind: Literal["TriggerAuthentication", "ClusterTriggerAuthentication"] = "TriggerAuthentication"


class Trigger(Strict):
    type: Literal["redis"]
    authenticationRef: AuthenticationRef
    metadata: RedisListTrigger


class ScaleTargetRef(Strict):
    name: str
    kind: Literal["Deployment"] = "Deployment"
    apiVersion: Literal["apps/v1"] = "apps/v1"


class ScaledObjectSpec(Strict):
    scaleTargetRef: ScaleTargetRef
    minReplicaCount: int = Field(ge=0)
    maxReplicaCount: int = Field(ge=1)
    pollingInterval: int = Field(ge=1)
    cooldownPeriod: int = Field(ge=0)
    triggers: list[Trigger] = Field(min_length=1)


class Metadata(Strict):
    name: str
    labels: dict[str, str]


class ScaledObject(Strict):
    apiVersion: Literal["keda.sh/v1alpha1"]
    kind: Literal["ScaledObject"]
    metadata: Metadata
    spec: ScaledObjectSpec


class SecretKeyRef(Strict):
    parameter: Literal["address", "password", "username", "tls", "ca", "sentinelPassword", "sentinelMaster"]
    name: str
    key: str


class TriggerAuthenticationSpec(Strict):
    secretTargetRef: list[SecretKeyRef]


class TriggerAuthentication(Strict):
    apiVersion: Literal["keda.sh/v1alpha1"]
    kind: Literal["TriggerAuthentication"]
    metadata: Metadata
    spec: TriggerAuthenticationSpec


def manifest_files() -> list[Path]:
    """The files the kustomization lists, in its order (``kubectl apply -k`` applies these)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / name for name in kustomization["resources"]]


def objects() -> Iterator[dict[str, Any]]:
    for path in manifest_files():
        yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects() if obj["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def worker_queues(deployment: dict[str, Any]) -> list[str]:
    """The queues a worker Deployment consumes (``celery -A proj worker -Q a,b``); [] for others."""
    command = container(deployment)["command"]
    if command[:4] != ["celery", "-A", "proj", "worker"]:
        return []
    return str(command[command.index("-Q") + 1]).split(",")


def workers_by_queue() -> dict[str, dict[str, Any]]:
    return {queue: d for d in of_kind("Deployment").values() for queue in worker_queues(d)}


def env_of_base() -> dict[str, str]:
    """The environment every container gets: the ConfigMap's data and the Secret's stringData."""
    return {**of_kind("ConfigMap")["agentchord"]["data"], **of_kind("Secret")["agentchord"]["stringData"]}


def test_the_kustomization_lists_every_manifest_once() -> None:
    listed = manifest_files()
    on_disk = {p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert len(listed) == len(set(listed))
    assert set(listed) == on_disk


def test_every_kubernetes_object_validates_against_the_schemas() -> None:
    checked = 0
    for obj in objects():
        if obj["apiVersion"] == KEDA_API:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 20


def test_keda_objects_match_the_crd_and_reach_the_secret() -> None:
    secrets = of_kind("Secret")
    authentications = {}
    for name, obj in of_kind("TriggerAuthentication").items():
        authentications[name] = TriggerAuthentication.model_validate(obj)
        for ref in authentications[name].spec.secretTargetRef:
            assert ref.key in secrets[ref.name]["stringData"], (name, ref)
    scaled = [ScaledObject.model_validate(obj) for obj in of_kind("ScaledObject").values()]
    assert scaled
    for so in scaled:
        assert so.spec.minReplicaCount <= so.spec.maxReplicaCount
        assert {t.authenticationRef.name for t in so.spec.triggers} <= set(authentications)


def test_the_models_refuse_what_keda_would_not_read() -> None:
    """The KEDA checks can fail: a misspelt field or a non-numeric length is refused."""
    good = next(iter(of_kind("ScaledObject").values()))
    misspelt = {**good, "spec": {**good["spec"], "minReplicas": 0}}
    with pytest.raises(ValidationError, match="minReplicas"):
        ScaledObject.model_validate(misspelt)
    trigger = {**good["spec"]["triggers"][0], "metadata": {"listName": "x", "listLength": "four", "databaseIndex": "0"}}
    with pytest.raises(ValidationError, match="listLength"):
        Trigger.model_validate(trigger)


def roles_of_builtin_workflows() -> set[str]:
    return {step.agent for name in builtin_workflows() for step in builtin_workflow(name).steps if step.agent}


def test_every_role_has_a_worker_deployment_a_scaled_object_and_a_disruption_budget() -> None:
    queues = roles_of_builtin_workflows() | built_in_roles() | {COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE}
    assert roles_of_builtin_workflows() >= {"reviewer", "test_writer", "doc_generator", "merger"}
    workers = workers_by_queue()
    assert set(workers) == queues
    scaled = {so["spec"]["scaleTargetRef"]["name"]: so for so in of_kind("ScaledObject").values()}
    budgets = [pdb["spec"]["selector"]["matchLabels"] for pdb in of_kind("PodDisruptionBudget").values()]
    redis_db = urlsplit(env_of_base()["AGENTCHORD_REDIS_URL"]).path.strip("/") or "0"
    for queue, deployment in workers.items():
        name = deployment["metadata"]["name"]
        so = scaled[name]
        # KEDA reads every list Celery's Redis transport keeps for the queue: the priority lists too.
        assert [t["metadata"]["listName"] for t in so["spec"]["triggers"]] == priority_lists(queue)
        assert {t["metadata"]["databaseIndex"] for t in so["spec"]["triggers"]} == {redis_db}
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
        assert sum(labels.items() <= pod_labels.items() for labels in budgets) == 1, name
        # KEDA's HPA owns the replica count; a `replicas` here would reset it on every apply.
        assert "replicas" not in deployment["spec"], name
        if queue in built_in_roles():
            assert so["spec"]["minReplicaCount"] == 0, name  # roles scale to zero
        else:
            assert so["spec"]["minReplicaCount"] >= 1, name  # the coordinator and notifications never do


def test_a_worker_outlives_its_longest_step_when_stopped() -> None:
    """terminationGracePeriodSeconds covers the role's hard time limit (its own, or the
    ConfigMap's AGENTCHORD_STEP_TIME_LIMIT_S), so a scale-down lets the running step finish."""
    default_limit = float(env_of_base()["AGENTCHORD_STEP_TIME_LIMIT_S"])
    assert default_limit == Settings.model_fields["step_time_limit_s"].default
    for queue, deployment in workers_by_queue().items():
        role = get_role(queue)
        limit = (role.time_limit_s if role else None) or default_limit
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= limit + SHUTDOWN_MARGIN_S, (queue, grace, limit)


def test_every_worker_is_probed_by_its_own_node_name() -> None:
    for queue, deployment in workers_by_queue().items():
        spec = container(deployment)
        command = spec["command"]
        node = command[command.index("-n") + 1]
        assert node == f"{queue}@%h"
        probe = shlex.split(spec["livenessProbe"]["exec"]["command"][-1])
        assert probe[:6] == ["exec", "celery", "-A", "proj", "inspect", "ping"]
        assert probe[probe.index("-d") + 1] == f"{queue}@$HOSTNAME"


def test_beat_runs_once_and_the_api_is_probed_on_healthz() -> None:
    deployments = of_kind("Deployment")
    beat = deployments["agentchord-beat"]
    assert container(beat)["command"][:4] == ["celery", "-A", "proj", "beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    assert not any(so["spec"]["scaleTargetRef"]["name"] == "agentchord-beat" for so in of_kind("ScaledObject").values())
    api = container(deployments["agentchord-api"])
    assert api["command"][:2] == ["agentchord", "api"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/healthz"
    from coordinator.interfaces.api import _PUBLIC_PATHS

    assert "/healthz" in _PUBLIC_PATHS  # the probe carries no token


def test_every_setting_in_the_base_is_a_real_setting() -> None:
    """A misspelt AGENTCHORD_ name in the ConfigMap or Secret would be ignored silently."""
    known = {f"AGENTCHORD_{name.upper()}" for name in Settings.model_fields}
    assert set(env_of_base()) <= known


def test_the_placeholder_secret_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """As shipped, the Secret's CHANGE-ME values stop every container at start, naming the setting;
    with real values in their place the same environment loads."""
    for name in [n for n in __import__("os").environ if n.startswith("AGENTCHORD_")]:
        monkeypatch.delenv(name)
    env = {k: v for k, v in env_of_base().items() if v != ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="AGENTCHORD_API_TOKENS"):
        Settings()
    monkeypatch.setenv("AGENTCHORD_API_TOKENS", "ops:start+read:" + "s" * 24)
    monkeypatch.setenv("AGENTCHORD_WEBHOOK_SECRETS", "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0")
    assert Settings().redis_url == env["AGENTCHORD_REDIS_URL"]
