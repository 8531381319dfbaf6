"""A Python `websockets` echo server for a ferrule client, for tests/tests/interop_python.rs.

Usage:
    server.py [EXPECTED_CLOSE_CODE] [deflate] [cert=CERT.pem key=KEY.pem]
        (default 1000; deflate: accept permessage-deflate; cert and key: serve wss:// with an ssl
        context holding that certificate chain and key)

Listens on 127.0.0.1 on an ephemeral port and prints `port=N` on stdout. Serves one connection:
echoes every message, except two commands sent as text:

    please-fragment   answers with fragmented text "fragmented ✓ from python" (a fragment boundary
                      inside a multi-byte character) and fragmented binary bytes(range(256)) * 3
    please-ping       pings the client, waits for its pong, answers "pong received"
    please-close      closes the connection with 4000 "bye from python"

When the connection opens, prints `extensions=...`: the permessage-deflate parameters agreed, in
the order ferrule displays them, or nothing. When that connection ends, prints `close=CODE reason=REASON` (what the client's close frame said)
and exits: 0 when its code is EXPECTED_CLOSE_CODE, 1 otherwise (the reason on stderr).
"""

import asyncio
import ssl
import sys

import websockets
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

OVERALL_TIMEOUT = 180
STEP_TIMEOUT = 60
MAX_SIZE = 16 * 1024 * 1024

FRAGMENTED_TEXT = "fragmented ✓ from python".encode()
FRAGMENTED_BINARY = bytes(range(256)) * 3


def extensions(ws):
    out = []
    for e in ws.protocol.extensions:
        # On a server, "remote" is the client.
        params = [e.name]
        if e.local_no_context_takeover:
            params.append("server_no_context_takeover")
        if e.remote_no_context_takeover:
            params.append("client_no_context_takeover")
        if e.local_max_window_bits != 15:
            params.append(f"server_max_window_bits={e.local_max_window_bits}")
        if e.remote_max_window_bits != 15:
            params.append(f"client_max_window_bits={e.remote_max_window_bits}")
        out.append("; ".join(params))
    return ",".join(out)


async def handler(ws, finished):
    print(f"extensions={extensions(ws)}", flush=True)
    try:
        async for message in ws:
            if message == "please-fragment":
                cut = FRAGMENTED_TEXT.index("✓".encode()) + 1  # inside the 3-byte character
                await ws.send([FRAGMENTED_TEXT[:cut], FRAGMENTED_TEXT[cut:]], text=True)
                await ws.send([FRAGMENTED_BINARY[:1], FRAGMENTED_BINARY[1:500], FRAGMENTED_BINARY[500:]])
            elif message == "please-ping":
                pong = await ws.ping(b"server-ping")
                await asyncio.wait_for(pong, STEP_TIMEOUT)
                await ws.send("pong received")
            elif message == "please-close":
                await ws.close(4000, "bye from python")
            else:
                await ws.send(message)
    except ConnectionClosed:
        pass
    finally:
        # The code and reason of the close frame the client sent, if any.
        rcvd = ws.protocol.close_rcvd
        finished.set_result((rcvd.code, rcvd.reason) if rcvd else (None, None))


async def main(expected, compression, tls):
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    async with serve(
        lambda ws: handler(ws, finished),
        "127.0.0.1",
        0,
        compression=compression,
        ping_interval=None,
        max_size=MAX_SIZE,
        ssl=tls,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"port={port}", flush=True)
        code, reason = await finished
    print(f"close={code} reason={reason}", flush=True)
    if code != expected:
        print(f"MISMATCH: the client's close frame had {code} {reason!r}, expected {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    print(f"websockets {websockets.__version__}", file=sys.stderr)
    expected = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    flags = sys.argv[2:]
    compression = "deflate" if "deflate" in flags else None
    files = dict(flag.split("=", 1) for flag in flags if "=" in flag)
    tls = None
    if "cert" in files:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(files["cert"], files["key"])
    sys.exit(asyncio.run(asyncio.wait_for(main(expected, compression, tls), OVERALL_TIMEOUT)))
