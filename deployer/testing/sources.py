"""The check every ``model.uri`` source runs against its emulator (S3 on moto, GCS on
gcp-storage-emulator, Blob on Azurite)::

    check_remote_source(uri, put=upload_bytes, reads=lambda: len(content_gets), tmp_path=tmp_path)

It deploys ``uri`` on the local provider and asserts real predictions; re-applies and asserts that
nothing was downloaded or stored again; replaces the remote object and asserts that the new content
is downloaded; asserts that a digest mismatch is refused and keeps nothing, and that a missing
object is a :class:`~deployer.errors.NotFoundError`. ``DEPLOYER_HOME`` is set by the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _model(flip: bool) -> tuple[bytes, Any]:
    import io

    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    x = rng.randn(100, 4)
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x, 1 - y if flip else y)
    buf = io.BytesIO()
    joblib.dump(model, buf)
    return buf.getvalue(), model


def check_remote_source(
    uri: str, *, put: Callable[[bytes], None], reads: Callable[[], int], tmp_path: Path, missing: str
) -> None:
    """Run the whole check (see the module docstring). ``put`` writes the object at ``uri``;
    ``reads`` counts content downloads sent so far; ``missing`` is a URI of no object."""
    import joblib
    import numpy as np
    import yaml

    import deployer
    from deployer.errors import DigestMismatchError, NotFoundError
    from deployer.sources import fetch

    home = Path(os.environ["DEPLOYER_HOME"])
    rows = np.array([[0.5, 0.1, -0.2, 0.3], [-2.0, 0.0, 0.3, 0.1]])
    data, first_model = _model(flip=False)
    put(data)
    spec = tmp_path / "remote-spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "from-remote", "model": {"uri": uri}}))
    before = reads()
    ep = deployer.apply(spec)
    try:
        assert ep.predict(rows) == first_model.predict(rows).tolist()
        assert reads() == before + 1
        again = deployer.apply(spec)
        assert again.last is not None and again.last.outcome == "unchanged"
        assert reads() == before + 1, "an unchanged object is not downloaded again"
        assert len(list((home / "local" / "artifacts" / "sha256").iterdir())) == 1, "nor stored again"
    finally:
        ep.destroy()

    first = fetch(uri, None, home)
    assert not first.downloaded
    data, second_model = _model(flip=True)
    put(data)  # new content under the same name: a new version tag
    changed = fetch(uri, None, home)
    assert changed.downloaded and changed.digest != first.digest and reads() == before + 2
    assert joblib.load(changed.path).predict(rows).tolist() == second_model.predict(rows).tolist()

    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(DigestMismatchError):
        fetch(uri, first.digest, elsewhere)
    assert not any((elsewhere / "sources").glob("sha256/*")), "a mismatch keeps nothing"
    assert not any((elsewhere / "sources").glob(".download-*")), "nor leaves scratch behind"
    with pytest.raises(NotFoundError, match="does not exist"):
        fetch(missing, None, home)
