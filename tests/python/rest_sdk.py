"""REST API v1 through the official OpenAlgo SDK (openalgo==1.0.47).

Environment: OA_HOST (e.g. http://127.0.0.1:5000), OA_APIKEY. Prices must be known for
NSE:SBIN (the embedded server's simulated feed provides them; the Rust test sets them).
Exits non-zero on the first failed check.
"""

import os
import sys
import time

from openalgo import api

HOST = os.environ["OA_HOST"]
KEY = os.environ["OA_APIKEY"]
client = api(api_key=KEY, host=HOST)
failures = []

# Stay under the default ORDER_RATE_LIMIT (10 per second) when run against a real server:
# order calls are spaced 110 ms apart. The SDK itself is used unmodified.
_last_call = [0.0]


def _paced(method):
    def call(*args, **kwargs):
        wait = 0.11 - (time.monotonic() - _last_call[0])
        if wait > 0:
            time.sleep(wait)
        _last_call[0] = time.monotonic()
        return method(*args, **kwargs)
    return call


for _name in ["placeorder", "placesmartorder", "modifyorder", "cancelorder", "cancelallorder",
              "closeposition", "basketorder", "splitorder"]:
    setattr(client, _name, _paced(getattr(client, _name)))


def check(name, response, *fields, **expected):
    """Asserts status success, the presence of `fields` and the `expected` values."""
    ok = isinstance(response, dict) and response.get("status") == "success"
    missing = [f for f in fields if not _has(response, f)]
    wrong = {k: (v, _get(response, k)) for k, v in expected.items() if _get(response, k) != v}
    if not ok or missing or wrong:
        failures.append(name)
        print(f"FAIL {name}: {response!r} missing={missing} wrong={wrong}")
    else:
        print(f"ok   {name}")
    return response


def _get(obj, path):
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def _has(obj, path):
    return _get(obj, path) is not None


def main():
    # Start in live mode (the analyzer toggle is exercised at the end).
    check("analyzertoggle live", client.analyzertoggle(mode=False), "data.mode", "data.total_logs",
          **{"data.analyze_mode": False})
    check("analyzerstatus", client.analyzerstatus(), "data.mode", "data.analyze_mode", "data.total_logs")
    client.closeposition(strategy="sdk")
    client.cancelallorder(strategy="sdk")

    market = check("placeorder MARKET",
                   client.placeorder(strategy="sdk", symbol="SBIN", action="BUY", exchange="NSE",
                                     price_type="MARKET", product="MIS", quantity=1), "orderid")
    status = check("orderstatus", client.orderstatus(order_id=market.get("orderid"), strategy="sdk"),
                   "data.action", "data.exchange", "data.order_status", "data.orderid", "data.price",
                   "data.pricetype", "data.product", "data.quantity", "data.symbol", "data.timestamp",
                   "data.trigger_price", **{"data.order_status": "complete"})

    limit = check("placeorder LIMIT",
                  client.placeorder(strategy="sdk", symbol="SBIN", action="BUY", exchange="NSE",
                                    price_type="LIMIT", product="MIS", quantity=1, price=1.05), "orderid")
    check("modifyorder",
          client.modifyorder(order_id=limit.get("orderid"), strategy="sdk", symbol="SBIN", action="BUY",
                             exchange="NSE", price_type="LIMIT", product="MIS", quantity=2, price=1.10),
          "orderid")
    check("cancelorder", client.cancelorder(order_id=limit.get("orderid"), strategy="sdk"), "orderid")

    for _ in range(2):
        client.placeorder(strategy="sdk", symbol="SBIN", action="BUY", exchange="NSE",
                          price_type="LIMIT", product="MIS", quantity=1, price=1.05)
    cancelled = check("cancelallorder", client.cancelallorder(strategy="sdk"),
                      "canceled_orders", "failed_cancellations", "message")
    if len(cancelled.get("canceled_orders") or []) != 2:
        failures.append("cancelallorder count")
        print(f"FAIL cancelallorder count: {cancelled}")

    check("placesmartorder", client.placesmartorder(strategy="sdk", symbol="SBIN", action="BUY",
                                                    exchange="NSE", price_type="MARKET", product="MIS",
                                                    quantity=2, position_size=3), "orderid")
    check("placesmartorder matched",
          client.placesmartorder(strategy="sdk", symbol="SBIN", action="BUY", exchange="NSE",
                                 price_type="MARKET", product="MIS", quantity=2, position_size=3),
          message="Positions Already Matched. No Action needed.")
    check("openposition", client.openposition(strategy="sdk", symbol="SBIN", exchange="NSE", product="MIS"),
          quantity=3)

    book = check("orderbook", client.orderbook(), "data.orders", "data.statistics.total_buy_orders",
                 "data.statistics.total_sell_orders", "data.statistics.total_completed_orders",
                 "data.statistics.total_open_orders", "data.statistics.total_rejected_orders")
    for key in ["action", "symbol", "exchange", "orderid", "product", "quantity", "price", "pricetype",
                "order_status", "trigger_price", "timestamp"]:
        if not _has(book, f"data.orders.0.{key}"):
            failures.append(f"orderbook {key}")
            print(f"FAIL orderbook row lacks {key}")
    trades = check("tradebook", client.tradebook(), "data.0.action", "data.0.symbol", "data.0.exchange",
                   "data.0.orderid", "data.0.product", "data.0.quantity", "data.0.average_price",
                   "data.0.trade_value", "data.0.timestamp")
    check("positionbook", client.positionbook(), "data.0.symbol", "data.0.exchange", "data.0.product",
          "data.0.quantity", "data.0.average_price")
    funds = check("funds", client.funds(), "data.availablecash", "data.collateral", "data.m2mrealized",
                  "data.m2munrealized", "data.utiliseddebits")
    try:
        float(funds["data"]["availablecash"])
    except Exception as error:  # noqa: BLE001
        failures.append("funds number")
        print(f"FAIL funds availablecash not numeric: {error}")
    check("closeposition", client.closeposition(strategy="sdk"), message="All Open Positions Squared Off")
    check("openposition after close",
          client.openposition(strategy="sdk", symbol="SBIN", exchange="NSE", product="MIS"), quantity=0)

    # Analyzer toggle: orders go to the sandbox and responses carry mode=analyze.
    check("analyzertoggle analyze", client.analyzertoggle(mode=True), "data.total_logs",
          **{"data.mode": "analyze", "data.analyze_mode": True})
    check("placeorder analyze", client.placeorder(strategy="sdk", symbol="SBIN", action="SELL", exchange="NSE",
                                                  price_type="MARKET", product="MIS", quantity=1),
          "orderid", mode="analyze")
    check("analyzerstatus analyze", client.analyzerstatus(), **{"data.analyze_mode": True})
    check("closeposition analyze", client.closeposition(strategy="sdk"), mode="analyze")
    check("analyzertoggle back", client.analyzertoggle(mode=False), **{"data.mode": "live"})

    # Symbol master and market data (openalgo data.py: search, symbol, multiquotes, intervals).
    check("search", client.search(query="SBIN"), "data.0.symbol", "data.0.lotsize",
                  "data.0.instrumenttype", **{"data.0.symbol": "SBIN"})
    check("search exchange", client.search(query="nifty", exchange="NSE_INDEX"),
          **{"data.0.symbol": "NIFTY", "data.0.exchange": "NSE_INDEX"})
    check("symbol", client.symbol(symbol="SBIN", exchange="NSE"), "data.id", "data.name",
          "data.tick_size", **{"data.symbol": "SBIN", "data.lotsize": 1})
    check("multiquotes", client.multiquotes(symbols=[{"symbol": "SBIN", "exchange": "NSE"},
                                                      {"symbol": "NOSUCH", "exchange": "NSE"}]),
          "results.1.data.ltp", "results.0.error", **{"results.1.symbol": "SBIN"})
    check("intervals", client.intervals(),
          **{"data.minutes": ["1m", "2m", "3m", "5m", "10m", "15m", "20m", "30m", "60m"],
             "data.hours": ["1h", "2h", "3h", "4h"], "data.days": ["D"], "data.weeks": ["W"],
             "data.months": ["M"]})

    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)
    print("all SDK checks passed")


if __name__ == "__main__":
    main()
