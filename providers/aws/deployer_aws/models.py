"""SageMaker Models: the container a release runs in, the tags it carries, and the ownership checks.

A model ``{endpoint}-{release}`` carries ``deployer:fingerprint`` and ``deployer:artifact``; finding one of
the expected name with another fingerprint means another ledger made it (release ids restart per ledger),
which is a :class:`ConflictError`, never a silent reuse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deployer.errors import ConflictError, StorageError
from deployer.records import Release
from deployer_aws import images, validation
from deployer_aws.options import AwsOptions
from deployer_aws.sagemaker import ARTIFACT_TAG, ENDPOINT_TAG, FINGERPRINT_TAG, RELEASE_TAG, Variant
from deployer_aws.store import S3ArtifactStore

TAKE_OVER = "deploy with the ledger that made it, `deployer adopt {endpoint}` to take the endpoint over, or destroy it"


def tags(release: Release, opts: AwsOptions) -> dict[str, str]:
    out = {
        **opts.tags,
        **release.tags,
        ENDPOINT_TAG: release.endpoint,
        RELEASE_TAG: release.id,
        FINGERPRINT_TAG: release.fingerprint,
    }
    if release.artifact is not None:
        out[ARTIFACT_TAG] = release.artifact.digest
    return out


def container(release: Release, opts: AwsOptions, region: str, store: Callable[[], S3ArtifactStore]) -> dict[str, Any]:
    """The model's PrimaryContainer: the prebuilt scikit-learn image with deployer's handler bundle (uploaded
    once, content-addressed), or the serving image; ``DEPLOYER_RELEASE`` names the release it serves."""
    out: dict[str, Any] = {}
    if release.flavor == "container":
        out["Image"] = release.image
        if release.artifact is not None:
            out["ModelDataUrl"] = release.artifact.uri
        return out
    if release.artifact is None:
        raise StorageError(f"release {release.id} has no artifact", hint="upload the model first")
    out["ModelDataUrl"] = release.artifact.uri
    if release.flavor == "sklearn" and not opts.image:
        out["Image"] = images.sklearn_image(region, validation.sklearn_container(opts))
        blob, digest = images.inference_bundle()
        ref = store().put_bytes(blob, digest, images.BUNDLE)
        out["Environment"] = images.sklearn_environment(ref.uri, region, release.id)
        return out
    out["Image"] = opts.image or release.image
    env: dict[str, str] = {"DEPLOYER_FLAVOR": release.flavor, "DEPLOYER_RELEASE": release.id}
    if release.entrypoint:
        env["DEPLOYER_ENTRYPOINT"] = release.entrypoint
    out["Environment"] = env
    return out


def check_model(name: str, found: dict[str, str], release: Release) -> None:
    """An existing model of the release's name must carry its fingerprint (none: made before tags existed)."""
    theirs = found.get(FINGERPRINT_TAG)
    if theirs is not None and theirs != release.fingerprint:
        raise ConflictError(
            f"model {name} exists and serves fingerprint {theirs}, not {release.fingerprint}: "
            f"release {release.id} of {release.endpoint} was made by another ledger",
            hint=TAKE_OVER.format(endpoint=release.endpoint),
        )


def check_variant(endpoint: str, have: Variant, release: Release) -> None:
    """A variant serving ``release.id`` must serve its fingerprint (None: made before tags existed)."""
    if have.fingerprint is not None and have.fingerprint != release.fingerprint:
        raise ConflictError(
            f"endpoint {endpoint} serves a release {release.id} with fingerprint {have.fingerprint}, "
            f"not {release.fingerprint}: another ledger deployed it",
            hint=TAKE_OVER.format(endpoint=endpoint),
        )
