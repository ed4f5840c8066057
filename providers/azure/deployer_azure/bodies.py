"""Request bodies of Azure ML endpoints and deployments, built with the SDK's generated REST models (pure).

Field names and allowed values follow the REST reference:
https://learn.microsoft.com/rest/api/azureml/online-endpoints/create-or-update and
https://learn.microsoft.com/rest/api/azureml/online-deployments/create-or-update.
"""

from __future__ import annotations

from typing import Any

from deployer.records import Release
from deployer_azure import _sdk, scoring
from deployer_azure.online import DIGEST_TAG, ENDPOINT_TAG, FINGERPRINT_TAG, RELEASE_TAG, seconds
from deployer_azure.options import AzureOptions, Probe

AUTH = {"key": "Key", "aml_token": "AMLToken", "aad_token": "AADToken"}
ENABLED = {"enabled": "Enabled", "disabled": "Disabled"}


def endpoint(options: AzureOptions, location: str, name: str, current: Any = None) -> Any:
    """The endpoint; with ``current`` (the endpoint as read), its traffic, mirror and tags are kept."""
    r = _sdk.rest
    props = r.OnlineEndpointProperties(
        auth_mode=AUTH[options.auth_mode],
        public_network_access=ENABLED[options.public_network_access],
        traffic=dict(current.properties.traffic or {}) if current is not None else {},
        mirror_traffic=dict(current.properties.mirror_traffic or {}) if current is not None else {},
    )
    tags = {**options.tags, ENDPOINT_TAG: name}
    if current is not None:
        tags = {**(current.tags or {}), **tags}
    return r.OnlineEndpoint(
        location=location,
        properties=props,
        identity=r.ManagedServiceIdentity(type="SystemAssigned"),
        kind="Managed",
        tags=tags,
    )


def release_tags(release: Release, options: AzureOptions) -> dict[str, str]:
    """What every resource of the release carries: the fingerprint, the artifact digest, the ids."""
    return {
        **options.tags,
        **release.tags,
        FINGERPRINT_TAG: release.fingerprint,
        DIGEST_TAG: release.artifact.digest if release.artifact else "",
        RELEASE_TAG: release.id,
        ENDPOINT_TAG: release.endpoint,
    }


def deployment(
    release: Release, options: AzureOptions, location: str, *, model_id: str, code_id: str | None, env_id: str
) -> Any:
    """The managed online deployment serving ``release`` with the registered assets (no ``code_id``: a
    ``deployer build`` image, told its flavor and release by environment variables)."""
    r = _sdk.rest
    props = r.ManagedOnlineDeployment(
        instance_type=release.resources.instance_type or options.instance_type,
        model=model_id,
        environment_id=env_id,
        code_configuration=(
            r.CodeConfiguration(code_id=code_id, scoring_script=scoring.SCRIPT_NAME) if code_id is not None else None
        ),
        environment_variables=scoring.serving_env(release) if code_id is None else None,
        request_settings=r.OnlineRequestSettings(
            request_timeout=seconds(options.request_timeout_ms / 1000),
            max_concurrent_requests_per_instance=options.max_concurrent_requests_per_instance,
        ),
        scale_settings=r.DefaultScaleSettings(),
        app_insights_enabled=options.app_insights,
        egress_public_network_access=ENABLED[options.egress_public_network_access],
        liveness_probe=probe(options.liveness_probe),
        readiness_probe=probe(options.readiness_probe),
    )
    return r.OnlineDeployment(
        location=location,
        properties=props,
        sku=r.Sku(name="Default", capacity=release.resources.replicas),
        tags=release_tags(release, options),
    )


def probe(p: Probe | None) -> Any:
    if p is None:
        return None
    return _sdk.rest.ProbeSettings(
        initial_delay=seconds(p.initial_delay_s),
        period=seconds(p.period_s),
        timeout=seconds(p.timeout_s),
        failure_threshold=p.failure_threshold,
        success_threshold=p.success_threshold,
    )
