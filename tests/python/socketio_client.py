"""A real python-socketio (AsyncClient) peer for oa's Socket.IO tests.

Environment:
  OA_URL         server base URL (http://127.0.0.1:port)
  OA_AUTH        JSON handshake auth payload, e.g. {"apikey": "...", "offset": 123}
  OA_TRANSPORTS  comma list: "polling", "websocket" or "polling,websocket" (upgrade)
  OA_EXPECT      number of events to collect before exiting (0: exit after connect/refusal)
  OA_TIMEOUT_S   give up after this long (default 15), exit code 3
  OA_DEBUG       "1": python-socketio and engineio logs on stderr

Prints one JSON object per line, like tests/node/socketio_client.mjs.
"""

import asyncio
import json
import os
import sys

import socketio


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main():
    url = os.environ["OA_URL"]
    auth = json.loads(os.environ.get("OA_AUTH", "{}"))
    transports = os.environ.get("OA_TRANSPORTS", "websocket").split(",")
    expect = int(os.environ.get("OA_EXPECT", "0"))
    timeout = float(os.environ.get("OA_TIMEOUT_S", "15"))

    debug = os.environ.get("OA_DEBUG") == "1"
    sio = socketio.AsyncClient(reconnection=False, logger=debug, engineio_logger=debug)
    done = asyncio.Event()
    count = 0

    @sio.event
    async def connect():
        out({"type": "connect", "transport": sio.transport()})
        if expect == 0:
            done.set()

    @sio.event
    async def connect_error(data):
        message = data.get("message") if isinstance(data, dict) else str(data)
        out({"type": "connect_error", "message": message})
        done.set()

    @sio.on("*")
    async def any_event(name, data):
        nonlocal count
        out({"type": "event", "name": name, "data": data})
        count += 1
        if count >= expect:
            done.set()

    try:
        await sio.connect(url, auth=auth, transports=transports, wait_timeout=10)
    except socketio.exceptions.ConnectionError as error:
        # connect_error has been printed by the handler when the server refused us.
        if not done.is_set():
            out({"type": "connect_error", "message": str(error)})
        return 0
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        out({"type": "timeout", "count": count})
        await sio.disconnect()
        return 3
    await sio.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
