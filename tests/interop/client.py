"""A Python `websockets` client driving a ferrule server, for tests/tests/interop_python.rs.

Usage:
    client.py echo URL [ca=CA.pem]  exchange and check echoes, ping, close 1000; prints extensions=...,
                                    messages=N; for a wss:// URL, ca= names the one CA to trust
    client.py echo-deflate URL      the same with permessage-deflate offered (websockets' default offer)
    client.py subprotocol URL P,Q   offer subprotocols P, Q; prints subprotocol=<negotiated or None>
    client.py origin URL ORIGIN     connect with this Origin; prints status=<HTTP status> or open
    client.py wait-close URL        wait for the server to close; prints close=CODE reason=REASON
    client.py oversize URL N        send N bytes of binary, wait for the close; prints close=...
    client.py invalid-utf8 URL      send a text frame that is not UTF-8, wait for the close; prints close=...
    client.py deflate URL           offer permessage-deflate; prints extensions=..., checks an echo, closes 1000
    client.py fragments URL         send "please-fragment", read the two messages the server streams back;
                                    prints frames=<the frames received>, text=..., binary=<hex>, closes 1000

Exit status: 0 when every check passed, 1 on a mismatch (the reason on stderr), 2 on misuse.
"""

import asyncio
import logging
import ssl
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame

# Fail rather than hang: the Rust side also kills this process after its own timeout.
OVERALL_TIMEOUT = 180
STEP_TIMEOUT = 60
LARGE = 4 * 1024 * 1024
MAX_SIZE = 16 * 1024 * 1024


class Mismatch(Exception):
    """An echo or close that differs from what was sent."""


# The TLS context for wss:// URLs, trusting the CA given as ca=CA.pem; None for ws://.
TLS = None


def options(compression=None):
    # proxy=None: never route loopback through a proxy from the environment.
    # compression=None: keep frames as sent, unless a test asks for "deflate".
    # ping_interval=None: the test sends its own ping.
    opts = dict(proxy=None, compression=compression, ping_interval=None, max_size=MAX_SIZE, open_timeout=STEP_TIMEOUT)
    if TLS is not None:
        opts["ssl"] = TLS
    return opts


def extensions(ws):
    # The negotiated extensions and their agreed parameters, e.g.
    # "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12".
    return ",".join(describe_extension(e) for e in ws.protocol.extensions)


def describe_extension(e):
    params = [e.name]
    if getattr(e, "remote_no_context_takeover", False):
        params.append("server_no_context_takeover")
    if getattr(e, "local_no_context_takeover", False):
        params.append("client_no_context_takeover")
    if getattr(e, "remote_max_window_bits", 15) != 15:
        params.append(f"server_max_window_bits={e.remote_max_window_bits}")
    if getattr(e, "local_max_window_bits", 15) != 15:
        params.append(f"client_max_window_bits={e.local_max_window_bits}")
    return "; ".join(params)


def describe(data):
    if isinstance(data, list):
        return f"{len(data)} fragments: {[describe(part) for part in data]}"
    if isinstance(data, str):
        return f"text of {len(data)} chars: {data[:40]!r}..."
    return f"binary of {len(data)} bytes: {data[:40]!r}..."


async def expect_echo(ws, sent, expected):
    got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
    if type(got) is not type(expected) or got != expected:
        raise Mismatch(f"sent {describe(sent)}\n  expected echo {describe(expected)}\n  got {describe(got)}")


async def echo(url, compression=None):
    sent = 0
    async with connect(url, **options(compression)) as ws:
        print(f"extensions={extensions(ws)}", flush=True)
        # Whole messages: text (multi-byte UTF-8 included), binary, empty ones.
        for message in ["hello, ferrule", "grüße ✓ 🦀", "", b"\x00\x01\x02\xff\xfe", b""]:
            await ws.send(message)
            sent += 1
            await expect_echo(ws, message, message)

        # Fragmented text: three str fragments, then a final empty continuation frame.
        fragments = ["frag", "mented ", "text ✓"]
        await ws.send(fragments)
        sent += 1
        await expect_echo(ws, fragments, "".join(fragments))

        # Fragmented text whose fragments split multi-byte UTF-8 characters (sent as bytes with text=True).
        encoded = "é✓🦀 split across frames".encode()
        chunks = [encoded[:1], encoded[1:4], encoded[4:6], encoded[6:]]
        await ws.send(chunks, text=True)
        sent += 1
        await expect_echo(ws, chunks, encoded.decode())

        # Fragmented binary, with an empty fragment in the middle.
        parts = [b"\x00" * 10, b"", bytes(range(256)) * 100, b"\xff"]
        await ws.send(parts)
        sent += 1
        await expect_echo(ws, parts, b"".join(parts))

        # Large messages: 4 MiB of binary and about 4 MiB of text, checked byte for byte.
        big_binary = (bytes(range(251)) * (LARGE // 251 + 1))[:LARGE]
        await ws.send(big_binary)
        sent += 1
        await expect_echo(ws, big_binary, big_binary)
        big_text = "ferrule ✓ " * (LARGE // 12)  # 12 bytes of UTF-8 each: just under 4 MiB
        await ws.send(big_text)
        sent += 1
        await expect_echo(ws, big_text, big_text)

        # A ping with a payload; websockets matches the pong's payload to it.
        pong = await ws.ping(b"interop-ping")
        await asyncio.wait_for(pong, STEP_TIMEOUT)

        # Close 1000 with a reason; the server echoes the close code.
        await asyncio.wait_for(ws.close(1000, "interop done"), STEP_TIMEOUT)
        if ws.close_code != 1000:
            raise Mismatch(f"server answered the close with code {ws.close_code}, reason {ws.close_reason!r}")
    print(f"messages={sent}", flush=True)


async def subprotocol(url, offered):
    async with connect(url, subprotocols=offered, **options()) as ws:
        print(f"subprotocol={ws.subprotocol}", flush=True)
        await asyncio.wait_for(ws.close(1000, "subprotocol checked"), STEP_TIMEOUT)


async def origin(url, value):
    try:
        async with connect(url, origin=value, **options()) as ws:
            print("open", flush=True)
            await asyncio.wait_for(ws.close(1000, "origin checked"), STEP_TIMEOUT)
    except InvalidStatus as e:
        print(f"status={e.response.status_code}", flush=True)


def print_close(ws):
    """The close frame the server sent: code and reason (close=None when none arrived)."""
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        print("close=None", flush=True)
    else:
        print(f"close={rcvd.code} reason={rcvd.reason}", flush=True)


async def wait_close(url):
    async with connect(url, **options()) as ws:
        print("open", flush=True)
        await asyncio.wait_for(ws.wait_closed(), STEP_TIMEOUT)
        print_close(ws)


async def violate(url, payload, text):
    # Not `async with`: its exit calls close() on the connection the server already closed, and
    # websockets then aborts the transport. When a large send was still draining as the connection
    # went down, asyncio (CPython 3.11 selector transports) may have torn that transport down
    # already, and abort() fails with "'NoneType' object has no attribute 'call_soon'". The
    # connection is over once wait_closed() returns; nothing is left to close.
    ws = await connect(url, **options())
    try:
        await ws.send(payload, text=text)
        # The server's close frame ends the iteration (or raises ConnectionClosedError).
        async for message in ws:
            raise Mismatch(f"the server answered with {describe(message)} instead of closing")
    except ConnectionClosed:
        pass
    await asyncio.wait_for(ws.wait_closed(), STEP_TIMEOUT)
    print_close(ws)


async def deflate(url):
    opts = options()
    opts["compression"] = "deflate"
    async with connect(url, **opts) as ws:
        print(f"extensions={','.join(e.name for e in ws.protocol.extensions)}", flush=True)
        message = "compress me " * 1000
        await ws.send(message)
        await expect_echo(ws, message, message)
        await asyncio.wait_for(ws.close(1000, "deflate checked"), STEP_TIMEOUT)


class FrameLog(logging.Handler):
    """Collects the frames websockets logs as received ("< %s" at debug level): `NAME` for a frame
    without FIN, `NAME.fin` with it. websockets has no other way to show frames."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.frames = []

    def emit(self, record):
        if record.msg == "< %s" and record.args and isinstance(record.args[0], Frame):
            frame = record.args[0]
            self.frames.append(f"{frame.opcode.name}.fin" if frame.fin else frame.opcode.name)


async def fragments(url):
    log = FrameLog()
    logger = logging.getLogger("interop.frames")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(log)
    async with connect(url, logger=logger, **options()) as ws:
        await ws.send("please-fragment")
        text = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
        binary = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
        if not isinstance(text, str) or not isinstance(binary, bytes):
            raise Mismatch(f"expected a text then a binary message, got {describe(text)} then {describe(binary)}")
        print(f"frames={' '.join(log.frames)}", flush=True)
        print(f"text={text}", flush=True)
        print(f"binary={binary.hex()}", flush=True)
        await asyncio.wait_for(ws.close(1000, "fragments checked"), STEP_TIMEOUT)
        if ws.close_code != 1000:
            raise Mismatch(f"server answered the close with code {ws.close_code}, reason {ws.close_reason!r}")


async def main(argv):
    global TLS
    for arg in argv[3:]:
        if arg.startswith("ca="):
            TLS = ssl.create_default_context(cafile=arg[len("ca="):])
    if len(argv) >= 3 and argv[1] == "echo":
        await echo(argv[2])
    elif len(argv) >= 3 and argv[1] == "echo-deflate":
        await echo(argv[2], "deflate")
    elif len(argv) >= 4 and argv[1] == "subprotocol":
        await subprotocol(argv[2], argv[3].split(","))
    elif len(argv) >= 4 and argv[1] == "origin":
        await origin(argv[2], argv[3])
    elif len(argv) >= 3 and argv[1] == "wait-close":
        await wait_close(argv[2])
    elif len(argv) >= 4 and argv[1] == "oversize":
        await violate(argv[2], b"\x00" * int(argv[3]), False)
    elif len(argv) >= 3 and argv[1] == "invalid-utf8":
        await violate(argv[2], b"valid, then \xff\xfe not", True)
    elif len(argv) >= 3 and argv[1] == "deflate":
        await deflate(argv[2])
    elif len(argv) >= 3 and argv[1] == "fragments":
        await fragments(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    print(f"websockets {websockets.__version__}", file=sys.stderr)
    try:
        sys.exit(asyncio.run(asyncio.wait_for(main(sys.argv), OVERALL_TIMEOUT)))
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        sys.exit(1)
