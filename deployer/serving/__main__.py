"""``python -m deployer.serving [serve]``: the container runtime (see :mod:`deployer.serving.contracts`)."""

from deployer.serving.contracts import main

raise SystemExit(main())
