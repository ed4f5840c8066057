"""Taking over an endpoint another ledger made: ``deployer adopt NAME --spec FILE``.

Release ids restart per ledger, so two machines (or two CI runs with fresh ledgers) deploying one
endpoint would each call their first release ``r0001``. Every resource carries its release's
fingerprint, and the engine refuses to change an endpoint that serves releases its ledger does not
know (:func:`deployer.planning.check_owned`). Adopting is the explicit way out:

* every release the provider observes is recorded into this ledger under its own id and with the
  fingerprint read from the resource (a row of the same id that said otherwise is replaced, and the
  journal keeps what it said);
* the release carrying the traffic becomes ``live``; the others are ``superseded`` (rollback targets
  while they run);
* when the live release's fingerprint is the spec's candidate fingerprint it is recorded with the
  spec's artifact (uploaded if this provider's store lacks it), so the next ``deploy`` of the spec is
  ``unchanged``; otherwise the outcome's notes say so, and the next ``deploy`` rolls the spec out as a
  new release with the adopted one as its baseline.

The adoption is journaled (``adopt``) with the actor (``user@host``) and what was found.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

from deployer.engine import Engine, Outcome, target_record
from deployer.errors import ConflictError, NotFoundError
from deployer.events import Adopted
from deployer.records import ArtifactRef, Release
from deployer.spec import Spec

RELEASE_ID = re.compile(r"r\d{4,}")


def adopt(engine: Engine, spec: Spec, candidate: Release, upload: Callable[[], ArtifactRef] | None) -> Outcome:
    """Record ``spec.name``'s observed releases into ``engine.ledger``. The caller holds the endpoint lock."""
    endpoint = spec.name
    observed = engine.call(lambda: engine.provider.observe(endpoint))
    if observed is None or not observed.releases:
        raise NotFoundError(
            f"endpoint {endpoint!r} does not exist on {engine.provider.name}: there is nothing to adopt",
            hint=f"deploy it with `deployer deploy SPEC` (spec name {endpoint!r})",
        )
    strangers = sorted(rid for rid in observed.releases if not RELEASE_ID.fullmatch(rid))
    if strangers:
        raise ConflictError(
            f"endpoint {endpoint!r} serves {', '.join(strangers)}, which deployer did not make",
            hint="remove them with the platform's own tools, or deploy under another endpoint name",
        )
    live = observed.traffic.primary()
    if live is None:
        raise ConflictError(
            f"endpoint {endpoint!r} routes no traffic, so no release is live to adopt",
            hint="route traffic with the tool that made it, or destroy it and deploy again",
        )
    notes: list[str] = []
    found = observed.releases[live]
    matches = found.fingerprint == candidate.fingerprint
    if matches and upload is not None:
        candidate = candidate.model_copy(update={"artifact": upload()})
    if not matches:
        notes.append(
            f"{live} serves fingerprint {(found.fingerprint or 'none')[:12]}, not the spec's "
            f"{candidate.fingerprint[:12]}: it is recorded as live as found, and the next `deployer deploy` "
            f"rolls the spec out as a new release with {live} as its baseline"
        )
    known = {r.id: r for r in engine.ledger.releases(endpoint)}
    previous: dict[str, Any] = {}
    engine.ledger.upsert_endpoint(endpoint, engine.provider.name, target_record(spec, engine.provider))
    with engine.ledger.transaction():
        for row in known.values():
            if row.status == "live" and row.id != live:
                engine.ledger.set_release(endpoint, row.id, status="superseded", reason="adopt: no longer live")
        for rid, rel in sorted(observed.releases.items()):
            status = "live" if rid == live else "superseded"
            mine = known.get(rid)
            if mine is not None and rel.fingerprint in (None, mine.fingerprint):
                engine.ledger.set_release(endpoint, rid, status=status, running=True)
                continue
            if mine is not None:
                previous[rid] = {"fingerprint": mine.fingerprint, "status": mine.status}
                notes.append(f"{rid} in this ledger was fingerprint {mine.fingerprint[:12]}: replaced by what runs")
            fingerprint = rel.fingerprint or "unknown"
            record = (
                candidate.model_copy(update={"id": rid})
                if fingerprint == candidate.fingerprint
                else Release(id=rid, endpoint=endpoint, fingerprint=fingerprint, flavor=spec.model.flavor)
            )
            engine.ledger.adopt_release(
                record, status=status, running=True, reason="adopted from the endpoint", spec_hash=spec.spec_hash()
            )
        engine.ledger.set_traffic(endpoint, observed.traffic)
        engine.ledger.set_endpoint_facts(endpoint, url=observed.url, meta=observed.meta)
        fingerprints = {rid: rel.fingerprint or "unknown" for rid, rel in observed.releases.items()}
        engine.ledger.journal(
            endpoint,
            live,
            "adopt",
            "done",
            detail={
                "live": live,
                "releases": fingerprints,
                "replaced": previous,
                "spec_fingerprint": candidate.fingerprint,
                "matches_spec": matches,
                "host": socket.gethostname(),
            },
        )
    engine.emit(Adopted(endpoint, live=live, releases=fingerprints, notes=notes))
    return Outcome(endpoint, live, "adopted", observed.url, notes=notes)
