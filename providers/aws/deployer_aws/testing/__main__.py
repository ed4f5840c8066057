"""``python -m deployer_aws.testing``: serve moto with the SageMaker additions and print what to export."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from deployer_aws.testing import DEFAULT_REGION, start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deployer_aws.testing",
        description="Run the aws provider offline: moto on 127.0.0.1 with the SageMaker additions deployer needs.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--region", default=DEFAULT_REGION, help=f"region to print (default: {DEFAULT_REGION})")
    parser.add_argument("--bucket", default=None, help="S3 bucket to create for artifacts (provider_options.bucket)")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    aws = start(args.port, args.region, args.bucket)
    for key, value in aws.env().items():
        print(f"export {key}={value}", flush=True)
    print(f"# serving at {aws.url}; Ctrl-C stops it", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        aws.stop()


if __name__ == "__main__":
    main()
