"""The built-in ``local`` provider: real HTTP endpoints on this machine.

* :mod:`deployer.local.provider`: :class:`LocalProvider` (the Provider contract) and its options.
* :mod:`deployer.local.supervisor`: one detached process per endpoint; binds the socket, forks workers.
* :mod:`deployer.local.worker`: a worker: uvicorn + :mod:`deployer.serving`, follows ``desired.json``.
* :mod:`deployer.local.drain`: how a retiring worker finishes its connections and drops no request.
* :mod:`deployer.local.state`: the on-disk files the three share.
* :mod:`deployer.local.liveness`: whether a supervisor runs (its lock, never a bare pid), its kept port.
* :mod:`deployer.local.store`: the content-addressed artifact store on disk.
* :mod:`deployer.local.serve`: foreground serving for ``deployer serve``.
"""
