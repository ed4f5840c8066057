"""The model server: loads releases and answers predictions over HTTP.

* :mod:`deployer.serving.loader`: load an extracted artifact by flavor (sklearn, onnx, python).
* :mod:`deployer.serving.routing`: the immutable routing table (releases + traffic split).
* :mod:`deployer.serving.app`: the raw ASGI app (``/predict``, ``/ready``, ``/metrics``, SageMaker aliases).
* :mod:`deployer.serving.metrics`: per-release per-second metrics, flushed per worker, merged per window.

Nothing here knows about providers; :mod:`deployer.local` runs it in worker processes.
"""
