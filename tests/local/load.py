"""A small load generator, run as a separate process against a local endpoint on 127.0.0.1.

    python tests/local/load.py http://127.0.0.1:PORT --seconds 5 --concurrency 4 --out load.json

It keeps ``--concurrency`` keep-alive HTTP/1.1 connections (raw asyncio, no client library, so it
stays light on a small machine) POSTing one JSON row to ``/predict``, optionally paced to ``--rps``
requests per second in total, and stops at ``--seconds``, after ``--max-requests``, or on
SIGTERM / SIGINT, whichever comes first. It never writes to stdout or stderr: everything goes to
``--out`` as JSON, rewritten atomically every 0.25 s while it runs (``"done": false``) and once at
the end (``"done": true``)::

    {"url": ..., "done": true, "started_at": ..., "finished_at": ..., "requests": 1234,
     "ok": 1230, "failed": 4,                 # failed = every non-2xx answer and every transport error
     "status": {"200": 1230, "500": 4},
     "releases": {"r0001": {"200": 1100}, "r0002": {"200": 130, "500": 4}},
     "transport_errors": {"ConnectionRefusedError": 0, ...},
     "timeline": [[sent_at, done_at, status, release], ...]}   # with --timeline only

A response's release is its ``X-Deployer-Release`` header (set on 200 and on model errors), else
the ``release`` field of the JSON body, else ``"?"``. Transport errors have status ``0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_SECONDS = 300.0
"""Hard bound on a run, whatever the arguments say."""


class Stats:
    def __init__(self, url: str, timeline: bool) -> None:
        self.url = url
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.status: Counter[str] = Counter()
        self.releases: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.transport: Counter[str] = Counter()
        self.keep_timeline = timeline
        self.timeline: list[list[Any]] = []
        self.requests = 0

    def record(self, sent: float, status: int, release: str | None) -> None:
        self.requests += 1
        self.status[str(status)] += 1
        if release is not None:
            self.releases[release][str(status)] += 1
        if self.keep_timeline:
            self.timeline.append([round(sent, 6), round(time.time(), 6), status, release])

    def to_dict(self, done: bool) -> dict[str, Any]:
        ok = sum(n for s, n in self.status.items() if s.startswith("2"))
        return {
            "url": self.url,
            "done": done,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "requests": self.requests,
            "ok": ok,
            "failed": self.requests - ok,
            "status": dict(self.status),
            "releases": {r: dict(c) for r, c in self.releases.items()},
            "transport_errors": dict(self.transport),
            "timeline": self.timeline if self.keep_timeline else None,
        }


def write(out: Path, data: dict[str, Any]) -> None:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, out)


async def one_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, str | None]:
    writer.write(request)
    await writer.drain()
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("connection closed by the server")
    status = int(line.split()[1])
    length = 0
    release = None
    close = False
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "x-deployer-release":
            release = value.strip()
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    body = await reader.readexactly(length) if length else b""
    if release is None and body[:1] == b"{":
        with contextlib.suppress(ValueError):
            release = json.loads(body).get("release")
    if close:
        raise _Closed(status, release)
    return status, release


class _Closed(Exception):
    """The server answered and asked to close the connection."""

    def __init__(self, status: int, release: str | None) -> None:
        super().__init__(status)
        self.status = status
        self.release = release


async def worker(
    idx: int, args: argparse.Namespace, stats: Stats, stop: asyncio.Event, deadline: float, budget: list[int]
) -> None:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    payload = json.dumps([[float(idx), 1.0, 2.0, 3.0]]).encode()
    headers = [
        f"POST {args.path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    if args.token:
        headers.append(f"Authorization: Bearer {args.token}")
    request = ("\r\n".join(headers) + "\r\n\r\n").encode() + payload
    interval = args.concurrency / args.rps if args.rps else 0.0
    next_at = time.monotonic() + (interval * idx / args.concurrency if interval else 0.0)
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while not stop.is_set() and time.monotonic() < deadline and budget[0] > 0:
        if interval:
            delay = next_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            next_at = max(next_at + interval, time.monotonic() - interval)
        budget[0] -= 1
        sent = time.time()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), args.timeout)
            status, release = await asyncio.wait_for(one_request(*conn, request), args.timeout)
            stats.record(sent, status, release)
        except _Closed as c:
            stats.record(sent, c.status, c.release)
            _close(conn)
            conn = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            stats.transport[type(e).__name__] += 1
            stats.record(sent, 0, None)
            _close(conn)
            conn = None
            if not interval:
                await asyncio.sleep(0.01)
    _close(conn)


def _close(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn[1].close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    stats = Stats(args.url, args.timeline)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + min(args.seconds, MAX_SECONDS)
    budget = [args.max_requests]
    tasks = [asyncio.create_task(worker(i, args, stats, stop, deadline, budget)) for i in range(args.concurrency)]

    async def progress() -> None:
        while True:
            write(out, stats.to_dict(done=False))
            await asyncio.sleep(0.25)

    reporter = asyncio.create_task(progress())
    await asyncio.gather(*tasks)
    reporter.cancel()
    stats.finished_at = time.time()
    data = stats.to_dict(done=True)
    write(out, data)
    return data


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url", help="http://127.0.0.1:PORT (loopback only)")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--out", required=True)
    p.add_argument("--rps", type=float, default=0.0, help="total requests per second (0: as fast as possible)")
    p.add_argument("--max-requests", type=int, default=200_000)
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    p.add_argument("--path", default="/predict")
    p.add_argument("--token", default=None)
    p.add_argument("--timeline", action="store_true", help="record every request's time, status and release")
    args = p.parse_args(argv)
    host = urlsplit(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        p.error(f"refusing to load {host!r}: loopback addresses only")
    if args.concurrency < 1 or args.seconds <= 0:
        p.error("--concurrency and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Never write to the parent's stdout / stderr: a crash goes to the output file's sibling.
    err = Path(args.out).with_suffix(".stderr")
    sys.stderr = open(err, "w")  # noqa: SIM115 - lives as long as the process
    sys.stdout = sys.stderr
    asyncio.run(main_async(args))
    return 0


# ---- the parent's side: start a run as a second process and read its file ---------------------


class Load:
    """A load run in a child process: ``start`` it, ``wait_for(n)`` requests, ``stop()``, read ``result``.

    The child's stdout and stderr go to ``DEVNULL`` / a file next to ``out``, never to the caller's.
    """

    def __init__(self, url: str, out: Path, *, seconds: float, concurrency: int = 4, rps: float = 0.0,
                 timeline: bool = False, timeout: float = 10.0) -> None:
        import subprocess

        self.out = Path(out)
        cmd = [sys.executable, str(Path(__file__).resolve()), url, "--seconds", str(seconds),
               "--concurrency", str(concurrency), "--out", str(self.out), "--rps", str(rps),
               "--timeout", str(timeout)]
        if timeline:
            cmd.append("--timeline")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.out.read_text())
        except (OSError, ValueError):
            return {"requests": 0, "done": False}

    def wait_for(self, requests: int = 1, timeout: float = 15.0) -> dict[str, Any]:
        """Block until the child has counted ``requests`` answers (of any status)."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.read()
            if data.get("requests", 0) >= requests:
                return data
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"load generator made {data.get('requests', 0)} requests, wanted {requests}: "
                                     f"exit {self.proc.poll()}, {data}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> dict[str, Any]:
        """SIGTERM the child (it finishes its requests in flight) and return its final counts."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except Exception:
            self.proc.kill()
            self.proc.wait()
            raise
        data = self.read()
        assert data.get("done"), f"load generator exited {self.proc.returncode} without a final report"
        return data

    def join(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the run to end on its own (``--seconds``) and return its final counts."""
        try:
            self.proc.wait(timeout)
        except Exception:
            return self.stop()
        return self.stop()

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def failures_by_release(data: dict[str, Any]) -> dict[str, int]:
    """Non-2xx answers per release (``"?"`` for answers that name none)."""
    return {rel: sum(n for s, n in counts.items() if not s.startswith("2"))
            for rel, counts in data.get("releases", {}).items()}


if __name__ == "__main__":
    raise SystemExit(main())
