#!/usr/bin/env python3
"""Wrong-credential guessing from one address, per check, against a running
gateway (plain ws, so no TLS cost hides the checks). Standard library only.

  bench/credentials.py --tunnel 127.0.0.1:PORT --proxy 127.0.0.1:PORT \
      --log GATEWAY_STDERR [--seconds 5] [--concurrency 16]

For each check (egress proxy Basic auth, admin API key, token endpoint
assertion, tunnel pre-shared key) it keeps CONCURRENCY connections busy for
SECONDS, one wrong guess per request, and counts the guesses the gateway
evaluated (its "wrong credential" answer: 407 or 401) apart from those it
throttled (429, or 407 saying "too many") or left unanswered. Keep-alive
is used where the gateway keeps the connection open after a refusal, as an
attacker would. It prints one line per check: guesses evaluated per second,
throttled, and the bytes the gateway's log grew by (in all and per failed
attempt).
"""

import argparse
import asyncio
import base64
import json
import os
import time


def requests(check, i):
    if check == "proxy":
        bad = base64.b64encode(f"user:wrong{i}".encode()).decode()
        return (
            "GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n"
            f"Proxy-Authorization: Basic {bad}\r\n\r\n"
        )
    if check == "admin":
        return (
            "GET /api/v1/agents HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: Bearer bk_000000000000_wrong{i}\r\n\r\n"
        )
    if check == "token":
        claims = base64.urlsafe_b64encode(
            json.dumps(
                {"iss": f"c{i}", "sub": f"c{i}", "aud": "x", "iat": 1, "exp": 2, "jti": "j"}
            ).encode()
        ).decode().rstrip("=")
        body = (
            "grant_type=client_credentials&client_assertion_type="
            "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
            f"&client_assertion=eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln"
        )
        return (
            "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )
    if check == "psk":
        return (
            "GET /tunnel HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Authorization: Bearer wrong-{i}\r\n\r\n"
        )
    raise ValueError(check)


async def read_response(reader):
    """Status line and body of one response, or None if the peer closed."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return status, body


async def worker(check, addr, deadline, counts, seq):
    host, port = addr.rsplit(":", 1)
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), deadline - time.monotonic()
            )
        except (OSError, asyncio.TimeoutError):
            counts["unanswered"] += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while time.monotonic() < deadline:
                seq[0] += 1
                writer.write(requests(check, seq[0]).encode())
                await writer.drain()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                status, body = await asyncio.wait_for(read_response(reader), left)
                if status == 429 or (status == 407 and b"too many" in body):
                    counts["throttled"] += 1
                elif status in (401, 407):
                    counts["evaluated"] += 1
                else:
                    counts["other"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, IndexError, ValueError):
            pass
        finally:
            writer.close()


async def run(check, addr, seconds, concurrency):
    counts = {"evaluated": 0, "throttled": 0, "unanswered": 0, "other": 0}
    deadline = time.monotonic() + seconds
    seq = [0]
    await asyncio.gather(
        *(worker(check, addr, deadline, counts, seq) for _ in range(concurrency))
    )
    return counts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tunnel", required=True)
    p.add_argument("--proxy", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--checks", default="proxy,admin,token,psk")
    a = p.parse_args()
    for check in a.checks.split(","):
        addr = a.proxy if check == "proxy" else a.tunnel
        before = os.path.getsize(a.log)
        c = asyncio.run(run(check, addr, a.seconds, a.concurrency))
        time.sleep(1.5)  # let the log's rate line land
        grew = os.path.getsize(a.log) - before
        failed = c["evaluated"] + c["throttled"]
        print(
            f"{check}\t{c['evaluated'] / a.seconds:.1f}\t{c['throttled']}\t"
            f"{grew}\t{grew / failed if failed else 0:.1f}\t{c['other']}"
        )


if __name__ == "__main__":
    main()
