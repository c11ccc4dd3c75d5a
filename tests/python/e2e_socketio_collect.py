"""Collects Socket.IO events from a running oa-server with the python-socketio client.

Environment:
  OA_URL         server base URL (http://127.0.0.1:port)
  OA_APIKEY      the API key sent in the handshake auth payload
  OA_TRANSPORTS  "websocket", "polling" or "polling,websocket" (default websocket)
  OA_STOP_EVENT  exit after receiving an event of this name (default: run until timeout)
  OA_TIMEOUT_S   exit after this many seconds (default 30)

Prints one JSON object per line: {"type":"connect"}, then {"type":"event","name","data"}
per event, then {"type":"done"} or {"type":"timeout"}.
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
    url = os.environ["OA_URL"]
    key = os.environ["OA_APIKEY"]
    transports = os.environ.get("OA_TRANSPORTS", "websocket").split(",")
    stop_event = os.environ.get("OA_STOP_EVENT", "")
    timeout = float(os.environ.get("OA_TIMEOUT_S", "30"))

    sio = socketio.AsyncClient(reconnection=False)
    done = asyncio.Event()

    @sio.event
    async def connect():
        out({"type": "connect", "transport": sio.transport()})

    @sio.event
    async def connect_error(data):
        out({"type": "connect_error", "message": str(data)})
        done.set()

    @sio.on("*")
    async def any_event(name, data):
        out({"type": "event", "name": name, "data": data})
        if name == stop_event:
            done.set()

    try:
        await sio.connect(url, auth={"apikey": key}, transports=transports, wait_timeout=10)
    except socketio.exceptions.ConnectionError as error:
        # Refused by the server (bad key) or not served at all (ORDER_EVENT_MODE=KAFKA).
        out({"type": "connect_error", "message": str(error)})
        return 0
    try:
        await asyncio.wait_for(done.wait(), timeout)
        out({"type": "done"})
    except asyncio.TimeoutError:
        out({"type": "timeout"})
    await sio.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
