"""Serve a model file or directory in the foreground (what ``deployer serve`` runs).

No packaging and no ledger: the release points straight at ``path``. The flavor library starts
importing (and an sklearn model unpickling) in a background thread before anything else happens,
then the supervisor binds the socket, forks the workers and runs until Ctrl-C / SIGTERM.

Also runnable as ``python -m deployer.local.serve PATH [--flavor F] [--port N] [--workers N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path

from deployer.errors import SpecError
from deployer.local.bind import TOKEN_ENV, require_token
from deployer.local.state import Desired, Paths, ReleaseSpec, write_desired
from deployer.local.supervisor import Supervisor, setup_logging, start_preload
from deployer.scratch import scratch


def serve_path(
    path: Path | str,
    *,
    flavor: str = "sklearn",
    entrypoint: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    token: str | None = None,
    name: str = "serve",
    endpoint_dir: Path | str | None = None,
) -> int:
    """Serve ``path`` as release ``r0001`` until stopped; returns the exit code.

    Blocks. ``endpoint_dir`` holds the runtime state (a temporary directory, removed at exit, when
    not given). ``token`` defaults to ``$DEPLOYER_LOCAL_TOKEN``; a ``host`` other than loopback
    without one raises :class:`~deployer.errors.SpecError` before anything starts. Otherwise raises
    nothing on purpose: a model that fails to load is logged and ``/ready`` answers 503.
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    require_token(host, token, field="token")
    spec = ReleaseSpec(path=str(Path(path).resolve()), flavor=flavor, entrypoint=entrypoint, replicas=workers)
    desired = Desired(
        endpoint=name,
        version=1,
        releases={"r0001": spec},
        weights={"r0001": 100},
        workers=workers,
        host=host,
        port=port,
        token=token,
    )
    importer = start_preload(desired)
    setup_logging()
    with scratch("serve") if endpoint_dir is None else nullcontext(Path(endpoint_dir)) as root:
        write_desired(Paths(root), desired)
        return Supervisor(root, importer=importer).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployer.local.serve", description=__doc__)
    parser.add_argument("path", help="model file or directory")
    parser.add_argument("--flavor", default="sklearn", choices=["sklearn", "onnx", "python"])
    parser.add_argument("--entrypoint", default=None, help="python flavor: module:Class")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--token", default=None, help=f"bearer token (default: ${TOKEN_ENV})")
    args = parser.parse_args(argv)
    try:
        return _serve_args(args)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _serve_args(args: argparse.Namespace) -> int:
    return serve_path(
        args.path,
        flavor=args.flavor,
        entrypoint=args.entrypoint,
        host=args.host,
        port=args.port,
        workers=args.workers,
        token=args.token,
    )


if __name__ == "__main__":
    sys.exit(main())
