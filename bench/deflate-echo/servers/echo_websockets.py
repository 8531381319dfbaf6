"""Python `websockets` echo server with its default permessage-deflate (12-bit windows, memLevel 5).

Usage: python echo_websockets.py PORT
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(port):
    async with serve(echo, "127.0.0.1", port, max_size=64 << 20):
        print(f"python websockets echo listening on {port}", file=sys.stderr)
        await asyncio.get_running_loop().create_future()


asyncio.run(main(int(sys.argv[1])))
