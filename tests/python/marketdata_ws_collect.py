"""A WebSocket market-data client (the official OpenAlgo SDK, openalgo==1.0.47) that prints
every market_data message it receives, one JSON line each.

Environment: OA_WS_URL (ws://host:port), OA_API_KEY, OA_INSTRUMENTS (comma-separated
EXCHANGE:SYMBOL), OA_TIMEOUT_S (exits after that long; default 60).
Prints {"type":"subscribed"} once subscribed (to Quote mode), then each message as received.
"""

import json
import os
import sys
import threading
import time

from openalgo import api


def emit(line):
    print(json.dumps(line), flush=True)


def main() -> int:
    url = os.environ["OA_WS_URL"]
    key = os.environ["OA_API_KEY"]
    timeout = float(os.environ.get("OA_TIMEOUT_S", "60"))
    instruments = []
    for item in os.environ["OA_INSTRUMENTS"].split(","):
        exchange, symbol = item.strip().split(":", 1)
        instruments.append({"exchange": exchange, "symbol": symbol})

    client = api(api_key=key, host="http://127.0.0.1:5000", ws_url=url, verbose=False)
    if not client.connect():
        print("connect() failed", file=sys.stderr)
        return 1
    lock = threading.Lock()

    def on_data(message):
        with lock:
            emit(message)

    if not client.subscribe_quote(instruments, on_data_received=on_data):
        print("subscribe_quote failed", file=sys.stderr)
        return 1
    emit({"type": "subscribed"})
    time.sleep(timeout)
    client.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
