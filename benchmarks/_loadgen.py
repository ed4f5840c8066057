"""Fallback closed-loop HTTP/1.1 load generator (used when wrk is not on PATH).

Usage: python _loadgen.py URL BODY SECONDS CONNECTIONS  ->  JSON {rps, p50_ms, p99_ms, non_2xx}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def _conn(host: str, port: int, request: bytes, until: float, lat: list[float], bad: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        lat.append((time.perf_counter() - t0) * 1000)
        if not head.startswith(b"HTTP/1.1 2"):
            bad.append(1)
    writer.close()


async def main(url: str, body: str, seconds: float, connections: int) -> dict[str, float]:
    u = urlsplit(url)
    data = body.encode()
    request = (
        f"POST {u.path} HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    lat: list[float] = []
    bad: list[int] = []
    until = time.perf_counter() + seconds
    await asyncio.gather(*(_conn(u.hostname or "", u.port or 80, request, until, lat, bad) for _ in range(connections)))
    lat.sort()
    return {
        "rps": len(lat) / seconds,
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[int(len(lat) * 0.99)],
        "non_2xx": float(len(bad)),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))))
