"""Baseline for the oa-events-socketio benchmark: the stack OpenAlgo uses (python-socketio)
serving the same events to the same client harness.

A python-socketio AsyncServer on aiohttp. Clients connect with auth {"apikey": "key-bench"}
and join the room of their user; POST /publish {"user", "event", "data"} emits the event to
that room, like oa's REST -> EventPublisher -> Socket.IO path. Prints "READY <port>" once
listening on 127.0.0.1 (port from OA_PORT, 0 = any).
"""

import asyncio
import itertools
import os
import sys
import uuid

import socketio
from aiohttp import web

KEYS = {"key-bench": "bench", "key-alice": "alice", "key-bob": "bob"}

sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
app = web.Application()
sio.attach(app)
seqs = {}


@sio.event
async def connect(sid, environ, auth):
    user = KEYS.get((auth or {}).get("apikey"))
    if user is None:
        raise socketio.exceptions.ConnectionRefusedError("Invalid openalgo apikey")
    await sio.enter_room(sid, user)


async def publish(request):
    body = await request.json()
    user = body["user"]
    seq = seqs.setdefault(user, itertools.count(1))
    data = dict(body["data"], event_id=str(uuid.uuid4()), seq=next(seq))
    await sio.emit(body["event"], data, room=user)
    return web.json_response({"status": "success"})


app.router.add_post("/publish", publish)


async def main():
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", int(os.environ.get("OA_PORT", "0")))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    # Run until stdin closes (the benchmark exits) or we are killed.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
