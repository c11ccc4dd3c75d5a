"""A python-socketio client that fails over between oa edges, resuming with its last seq.

It connects to the first URL; whenever the connection ends (or is refused) it connects to
the next URL in the list, sending {"apikey": ..., "offset": <seq of the last event it
received>} so that the edge replays what it missed (docs/scaling.md). What a real client of
several edges behind a load balancer does.

Environment:
  OA_URLS        comma-separated server base URLs (http://127.0.0.1:port,...)
  OA_APIKEY      the API key sent in the handshake auth payload
  OA_OFFSET      the offset to send on the first connect (default: none, live only)
  OA_TIMEOUT_S   exit after this many seconds (default 120)

Prints one JSON object per line: {"type":"connect","url","offset"},
{"type":"event","name","data"}, {"type":"disconnect","url"},
{"type":"connect_error","url","message"}, and {"type":"timeout"} at the end.
"""

import asyncio
import json
import os
import sys

import socketio


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> int:
    urls = os.environ["OA_URLS"].split(",")
    key = os.environ["OA_APIKEY"]
    offset = os.environ.get("OA_OFFSET")
    last_seq = int(offset) if offset else None
    timeout = float(os.environ.get("OA_TIMEOUT_S", "120"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    index = 0
    while loop.time() < deadline:
        url = urls[index % len(urls)]
        index += 1
        sio = socketio.AsyncClient(reconnection=False)
        ended = asyncio.Event()

        @sio.on("*")
        async def any_event(name, data):
            nonlocal last_seq
            out({"type": "event", "name": name, "data": data})
            if isinstance(data, dict) and isinstance(data.get("seq"), int):
                last_seq = data["seq"]

        @sio.event
        async def disconnect(*_reason):
            ended.set()

        refusal = {}

        @sio.event
        async def connect_error(data):
            refusal["message"] = data.get("message") if isinstance(data, dict) else str(data)

        auth = {"apikey": key}
        if last_seq is not None:
            auth["offset"] = last_seq
        try:
            await sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
        except socketio.exceptions.ConnectionError as error:
            message = refusal.get("message", str(error))
            out({"type": "connect_error", "url": url, "message": message})
            await asyncio.sleep(0.2)
            continue
        out({"type": "connect", "url": url, "offset": auth.get("offset")})
        try:
            await asyncio.wait_for(ended.wait(), max(deadline - loop.time(), 0.1))
        except asyncio.TimeoutError:
            await sio.disconnect()
            break
        out({"type": "disconnect", "url": url})
        await sio.disconnect()
    out({"type": "timeout"})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
