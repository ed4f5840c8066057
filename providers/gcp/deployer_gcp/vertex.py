"""Vertex AI names, labels and request bodies for releases. Imports no SDK (bodies are dicts).

How a release is found again (resources say what they serve):

* its **Model** is a version of one parent model per endpoint (model id = the endpoint name), carrying
  the labels ``deployer-endpoint``, ``deployer-release``, ``deployer-fingerprint`` and
  ``deployer-digest`` (the first 32 hex digits of the artifact's sha256; label values hold at most
  63 characters), plus ``deployer-deploy-op`` (the id of the DeployModel operation in flight, so a
  killed process re-attaches to it);
* its **DeployedModel** (which has no labels) is named ``RELEASE.FINGERPRINT`` in its display name:
  that is where ``observe`` reads the release id and its fingerprint, and how traffic-split keys
  (deployed-model ids) map to release ids and back;
* the **Endpoint** id is the endpoint name and carries ``deployer-endpoint``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from deployer.records import Release
from deployer.spec import Autoscaling
from deployer_gcp.options import GcpOptions

L_ENDPOINT = "deployer-endpoint"
L_RELEASE = "deployer-release"
L_FINGERPRINT = "deployer-fingerprint"
L_DIGEST = "deployer-digest"
L_DEPLOY_OP = "deployer-deploy-op"
DEFAULT_MACHINE = "n1-standard-2"
CPU_METRIC = "aiplatform.googleapis.com/prediction/online/cpu/utilization"
REQUESTS_METRIC = "aiplatform.googleapis.com/prediction/online/request_count"
DISPLAY_RE = re.compile(r"^(r\d{4,})\.([a-z0-9_-]{1,63})$")


def label_value(value: str) -> str:
    """A label-safe value: lowercase, [a-z0-9_-], at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def deployed_name(release_id: str, fingerprint: str) -> str:
    return f"{release_id}.{label_value(fingerprint)}"


def parse_deployed_name(display_name: str) -> tuple[str, str] | None:
    m = DISPLAY_RE.fullmatch(display_name or "")
    return (m.group(1), m.group(2)) if m else None


@dataclass
class Deployed:
    """One DeployedModel as deployer reads it."""

    id: str
    release: str
    fingerprint: str | None
    model: str
    min_replicas: int = 0
    max_replicas: int = 0
    metric_specs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EndpointView:
    """An Endpoint with its deployed models keyed by release id and its split by release id."""

    name: str
    labels: dict[str, str]
    deployed: dict[str, Deployed]
    weights: dict[str, int]

    @classmethod
    def parse(cls, ep: dict[str, Any]) -> EndpointView:
        deployed: dict[str, Deployed] = {}
        for dm in ep.get("deployed_models", []):
            parsed = parse_deployed_name(dm.get("display_name", ""))
            rid, fp = parsed if parsed else (f"foreign-{dm['id']}", None)
            res = dm.get("dedicated_resources", {})
            deployed[rid] = Deployed(
                id=str(dm["id"]),
                release=rid,
                fingerprint=fp,
                model=dm.get("model", ""),
                min_replicas=int(res.get("min_replica_count", 0)),
                max_replicas=int(res.get("max_replica_count", 0)),
                metric_specs=list(res.get("autoscaling_metric_specs", [])),
            )
        by_id = {d.id: rid for rid, d in deployed.items()}
        weights = {by_id.get(k, f"foreign-{k}"): int(v) for k, v in ep.get("traffic_split", {}).items() if int(v)}
        return cls(name=ep["name"], labels=dict(ep.get("labels", {})), deployed=deployed, weights=weights)

    def split(self, weights: dict[str, int], new: str | None = None) -> dict[str, int]:
        """Release weights as a traffic split keyed by deployed-model id ("0" for ``new``, being deployed)."""
        out = {}
        for rid, w in weights.items():
            if not w:
                continue
            out["0" if rid == new else self.deployed[rid].id] = int(w)
        return out


def release_labels(release: Release, opts: GcpOptions) -> dict[str, str]:
    user = {k: label_value(v) for k, v in {**opts.labels, **release.tags}.items() if _label_key(k)}
    return {
        **user,
        L_ENDPOINT: release.endpoint,
        L_RELEASE: release.id,
        L_FINGERPRINT: label_value(release.fingerprint),
        **({L_DIGEST: release.artifact.digest[:32]} if release.artifact else {}),
    }


def _label_key(key: str) -> bool:
    return bool(re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key)) and not key.startswith("deployer")


def endpoint_body(endpoint: str, opts: GcpOptions, tags: dict[str, str]) -> dict[str, Any]:
    labels = {k: label_value(v) for k, v in {**opts.labels, **tags}.items() if _label_key(k)}
    body: dict[str, Any] = {"display_name": endpoint, "labels": {**labels, L_ENDPOINT: endpoint}}
    if opts.kms_key_name:
        body["encryption_spec"] = {"kms_key_name": opts.kms_key_name}
    if opts.network:
        body["network"] = opts.network
    if opts.request_logging:
        body["predict_request_response_logging_config"] = {
            "enabled": True,
            "sampling_rate": opts.request_logging.sampling_rate,
            "bigquery_destination": {"output_uri": opts.request_logging.bigquery_table},
        }
    return body


def model_body(release: Release, artifact_dir: str, image: str, custom: bool, opts: GcpOptions) -> dict[str, Any]:
    container: dict[str, Any] = {"image_uri": image}
    if custom:  # deployer's serving image (or the user's): its own routes and flavor
        from deployer_gcp.containers import HEALTH_ROUTE, PREDICT_ROUTE

        env = [{"name": "DEPLOYER_FLAVOR", "value": release.flavor}]
        if release.entrypoint:
            env.append({"name": "DEPLOYER_ENTRYPOINT", "value": release.entrypoint})
        container.update(env=env, predict_route=PREDICT_ROUTE, health_route=HEALTH_ROUTE,
                         ports=[{"container_port": 8080}])
    body: dict[str, Any] = {
        "display_name": f"{release.endpoint}-{release.id}",
        "artifact_uri": artifact_dir,
        "container_spec": container,
        "labels": release_labels(release, opts),
    }
    if opts.kms_key_name:
        body["encryption_spec"] = {"kms_key_name": opts.kms_key_name}
    return body


def metric_specs(auto: Autoscaling | None) -> list[dict[str, Any]]:
    """``autoscaling_metric_specs`` from the spec's autoscaling (CPU utilisation or requests per minute)."""
    if auto is None:
        return []
    if auto.target_metric == "cpu_utilization":
        return [{"metric_name": CPU_METRIC, "target": int(auto.target_value)}]
    return [{"metric_name": REQUESTS_METRIC, "target": int(auto.target_value)}]


def replicas(release: Release) -> tuple[int, int]:
    if release.autoscaling is not None:
        return release.autoscaling.min, release.autoscaling.max
    return release.resources.replicas, release.resources.replicas


def deployed_model_body(release: Release, model_version: str, opts: GcpOptions) -> dict[str, Any]:
    machine: dict[str, Any] = {"machine_type": opts.machine_type or release.resources.instance_type or DEFAULT_MACHINE}
    if opts.accelerator:
        machine.update(accelerator_type=opts.accelerator.type, accelerator_count=opts.accelerator.count)
    low, high = replicas(release)
    body: dict[str, Any] = {
        "model": model_version,
        "display_name": deployed_name(release.id, release.fingerprint),
        "dedicated_resources": {
            "machine_spec": machine,
            "min_replica_count": low,
            "max_replica_count": high,
            "autoscaling_metric_specs": metric_specs(release.autoscaling),
        },
    }
    if opts.service_account:
        body["service_account"] = opts.service_account
    return body


def find_version(versions: list[dict[str, Any]], release: str) -> dict[str, Any] | None:
    """The model version labelled as ``release`` (the newest, if a crash left two)."""
    found = [v for v in versions if v.get("labels", {}).get(L_RELEASE) == release]
    return found[-1] if found else None


def version_name(version: dict[str, Any]) -> str:
    return f"{version['name']}@{version['version_id']}"
