"""An external process feeding oa's market-data bus with pyzmq, as any broker adapter would.

Connects a PUB socket to OA_ZMQ_ENDPOINT and publishes two-frame messages
[topic, JSON payload] for OA_SECONDS seconds: a QUOTE tick of NSE_INDEX:NIFTY (an exchange with
an underscore) and an LTP tick of CRYPTO:SOL_INR (a symbol with an underscore).
The Rust test asserts that a WebSocket client receives them. Exits non-zero on failure.
"""

import json
import os
import sys
import time

import zmq


def main() -> int:
    endpoint = os.environ["OA_ZMQ_ENDPOINT"]
    seconds = float(os.environ.get("OA_SECONDS", "3"))
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.setsockopt(zmq.SNDHWM, 100_000)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    deadline = time.time() + seconds
    published = 0
    while time.time() < deadline:
        now = int(time.time() * 1000)
        nifty = {
            "ltp": 24350.5, "ltt": now, "timestamp": now, "symbol": "NIFTY",
            "exchange": "NSE_INDEX", "mode": 2, "open": 24300.0, "high": 24400.0,
            "low": 24250.0, "close": 24310.0, "volume": 0, "average_price": 0,
            "total_buy_quantity": 0, "total_sell_quantity": 0, "last_quantity": 0, "oi": 0,
        }
        sol = {"ltp": 19800.25, "ltt": now, "timestamp": now, "symbol": "SOL_INR",
               "exchange": "CRYPTO", "mode": 1}
        socket.send_multipart([b"NSE_INDEX_NIFTY_QUOTE", json.dumps(nifty).encode()])
        socket.send_multipart([b"CRYPTO_SOL_INR_LTP", json.dumps(sol).encode()])
        published += 2
        time.sleep(0.05)
    socket.close()
    context.term()
    if published == 0:
        print("nothing published", file=sys.stderr)
        return 1
    print(f"published {published} messages to {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
