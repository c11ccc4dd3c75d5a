"""The official OpenAlgo SDK feed client (openalgo==1.0.47) against oa's WebSocket proxy.

Environment: OA_WS_URL (ws://host:port), OA_API_KEY. The server must stream ticks for
NSE:SBIN and NSE_INDEX:NIFTY (the Rust test starts the simulated feed).
Checks connect, subscribe_ltp/quote/depth with callbacks, get_ltp/get_quotes/get_depth with the
documented fields, unsubscribe_*, disconnect. Exits non-zero on the first failed check.
"""

import os
import sys
import threading
import time

from openalgo import api

FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print(f"FAIL: {message}", file=sys.stderr)


def wait_for(predicate, seconds=10.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def main() -> int:
    url = os.environ["OA_WS_URL"]
    key = os.environ["OA_API_KEY"]
    client = api(api_key=key, host="http://127.0.0.1:5000", ws_url=url, verbose=False)
    instruments = [{"exchange": "NSE", "symbol": "SBIN"}, {"exchange": "NSE_INDEX", "symbol": "NIFTY"}]

    check(client.connect(), "connect() authenticates")
    if FAILURES:
        return 1

    seen = {"ltp": [], "quote": [], "depth": []}
    lock = threading.Lock()

    def on(kind):
        def callback(message):
            with lock:
                seen[kind].append(message)
        return callback

    # One message per tick at the highest subscribed mode (upstream websocket_proxy/server.py):
    # once Quote is subscribed too, a symbol's ticks arrive as Quote messages, so each kind is
    # checked before the next one is subscribed.
    check(client.subscribe_ltp(instruments, on_data_received=on("ltp")), "subscribe_ltp sent")
    check(wait_for(lambda: len(seen["ltp"]) > 0), "ltp callback received data")
    check(wait_for(lambda: "NIFTY" in client.get_ltp().get("ltp", {}).get("NSE_INDEX", {})),
          "get_ltp has NSE_INDEX:NIFTY")
    check(client.subscribe_quote(instruments, on_data_received=on("quote")), "subscribe_quote sent")
    check(wait_for(lambda: len(seen["quote"]) > 0), "quote callback received data")
    check(wait_for(lambda: "SBIN" in client.get_quotes().get("quote", {}).get("NSE", {})),
          "get_quotes has NSE:SBIN")
    check(client.subscribe_depth([instruments[0]], on_data_received=on("depth")), "subscribe_depth sent")
    check(wait_for(lambda: len(seen["depth"]) > 0), "depth callback received data")

    # Callback messages have the documented shape.
    with lock:
        ltp_msg = seen["ltp"][0] if seen["ltp"] else {}
        quote_msg = seen["quote"][0] if seen["quote"] else {}
        depth_msg = seen["depth"][0] if seen["depth"] else {}
    check(ltp_msg.get("type") == "market_data" and ltp_msg.get("mode") == 1, f"ltp callback message: {ltp_msg}")
    check(isinstance(ltp_msg.get("data", {}).get("ltp"), (int, float)), f"ltp callback has data.ltp: {ltp_msg}")
    check(quote_msg.get("mode") == 2, f"quote callback mode 2: {quote_msg}")
    check(depth_msg.get("mode") == 3, f"depth callback mode 3: {depth_msg}")

    ltp = client.get_ltp()
    sbin = ltp.get("ltp", {}).get("NSE", {}).get("SBIN", {})
    check(isinstance(sbin.get("ltp"), (int, float)) and sbin["ltp"] > 0, f"get_ltp NSE:SBIN ltp > 0: {ltp}")
    check(isinstance(sbin.get("timestamp"), int) and sbin["timestamp"] > 1_700_000_000_000,
          f"get_ltp NSE:SBIN timestamp in epoch ms: {sbin}")
    only_nse = client.get_ltp(exchange="NSE")
    check(list(only_nse.get("ltp", {}).keys()) == ["NSE"], f"get_ltp(exchange=NSE) filters: {only_nse}")

    quotes = client.get_quotes()
    quote = quotes.get("quote", {}).get("NSE", {}).get("SBIN", {})
    for field in ("timestamp", "open", "high", "low", "close", "ltp", "volume",
                  "last_trade_quantity", "avg_trade_price", "change", "change_percent"):
        check(field in quote, f"get_quotes NSE:SBIN has {field}: {quote}")
    check(quote.get("low", 0) <= quote.get("ltp", -1) <= quote.get("high", 0), f"low <= ltp <= high: {quote}")
    check(quote.get("open", 0) > 0 and quote.get("close", 0) > 0, f"open and close > 0: {quote}")
    check(quote.get("volume", 0) > 0, f"volume > 0: {quote}")
    # The simulated feed fills the fields the SDK reads beyond oa's tick model, and the proxy
    # passes them through (they read 0 when missing).
    check(quote.get("last_trade_quantity", 0) > 0, f"last_trade_quantity > 0: {quote}")
    check(quote.get("avg_trade_price", 0) > 0, f"avg_trade_price > 0: {quote}")
    change = quote.get("ltp", 0) - quote.get("close", 0)
    check(abs(quote.get("change", 1e9) - change) < 0.011, f"change = ltp - close: {quote}")
    percent = change / quote["close"] * 100 if quote.get("close") else 0
    check(abs(quote.get("change_percent", 1e9) - percent) < 0.011,
          f"change_percent = change / close: {quote}")

    depth = client.get_depth().get("depth", {}).get("NSE", {}).get("SBIN", {})
    check(depth.get("ltp", 0) > 0, f"get_depth ltp > 0: {depth}")
    buy = depth.get("buyBook", {})
    sell = depth.get("sellBook", {})
    check(sorted(buy.keys()) == ["1", "2", "3", "4", "5"], f"buyBook has 5 levels: {buy}")
    check(sorted(sell.keys()) == ["1", "2", "3", "4", "5"], f"sellBook has 5 levels: {sell}")
    if buy.get("1") and sell.get("1"):
        check(buy["1"]["price"] < sell["1"]["price"], f"best bid < best ask: {buy['1']} {sell['1']}")
        check(buy["1"]["qty"] > 0 and buy["1"]["orders"] > 0, f"level 1 has qty and orders: {buy['1']}")
        check(buy["1"]["price"] > buy["2"]["price"], "bids sorted best first")

    # Unsubscribe: data stops arriving for the unsubscribed kinds.
    check(client.unsubscribe_ltp(instruments), "unsubscribe_ltp sent")
    check(client.unsubscribe_quote(instruments), "unsubscribe_quote sent")
    check(client.unsubscribe_depth([instruments[0]]), "unsubscribe_depth sent")
    time.sleep(0.5)
    with lock:
        counts = {kind: len(messages) for kind, messages in seen.items()}
    time.sleep(1.0)
    with lock:
        after = {kind: len(messages) for kind, messages in seen.items()}
    check(after == counts, f"no data after unsubscribe: before {counts}, after {after}")

    client.disconnect()
    check(not client.connected, "disconnect() closes")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        return 1
    print(f"sdk feed ok: {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
