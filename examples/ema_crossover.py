"""EMA crossover: long while the fast EMA of 1-minute closes is above the slow one, short
while it is below. Written with the official OpenAlgo Python SDK only (`pip install openalgo`),
so it runs unmodified against OpenAlgo or oa.

Every POLL_SECONDS it reads the last days of 1-minute candles with `history`, computes both
EMAs on the closes and, when the regime differs from the one it last acted on (and at its
first look), sets the position with `placesmartorder` (`position_size` +QUANTITY or
-QUANTITY: the server works out the order that gets there).

Settings (environment variables):
  OPENALGO_HOST      http://127.0.0.1:5000
  OPENALGO_API_KEY   the API key (required)
  SYMBOL, EXCHANGE   SBIN, NSE
  PRODUCT            MIS
  QUANTITY           1
  FAST, SLOW         9, 21 (EMA spans, in candles)
  POLL_SECONDS       30
  RUN_SECONDS        0 (0 runs until interrupted)
  STRATEGY           EMA Crossover (the order tag)

Run it against oa in analyzer mode (paper trading), for example:
  cargo run -p oa-server    # prints the API key on first start
  OPENALGO_API_KEY=<key> python examples/ema_crossover.py
"""

import datetime as dt
import os
import sys
import time

from openalgo import api

HOST = os.environ.get("OPENALGO_HOST", "http://127.0.0.1:5000")
API_KEY = os.environ.get("OPENALGO_API_KEY", "")
SYMBOL = os.environ.get("SYMBOL", "SBIN")
EXCHANGE = os.environ.get("EXCHANGE", "NSE")
PRODUCT = os.environ.get("PRODUCT", "MIS")
QUANTITY = int(os.environ.get("QUANTITY", "1"))
FAST = int(os.environ.get("FAST", "9"))
SLOW = int(os.environ.get("SLOW", "21"))
POLL_SECONDS = float(os.environ.get("POLL_SECONDS", "30"))
RUN_SECONDS = float(os.environ.get("RUN_SECONDS", "0"))
STRATEGY = os.environ.get("STRATEGY", "EMA Crossover")


def regime(client):
    """+1 when the fast EMA is above the slow one, -1 below, None without enough candles."""
    today = dt.date.today()
    candles = client.history(symbol=SYMBOL, exchange=EXCHANGE, interval="1m",
                             start_date=(today - dt.timedelta(days=7)).isoformat(),
                             end_date=today.isoformat())
    if not hasattr(candles, "empty") or len(candles) <= SLOW:
        print(f"waiting for candles: {candles if isinstance(candles, dict) else len(candles)}",
              flush=True)
        return None
    close = candles["close"]
    fast = close.ewm(span=FAST, adjust=False).mean().iloc[-1]
    slow = close.ewm(span=SLOW, adjust=False).mean().iloc[-1]
    print(f"{candles.index[-1]} close {close.iloc[-1]:.2f} EMA{FAST} {fast:.2f} "
          f"EMA{SLOW} {slow:.2f}", flush=True)
    return 1 if fast > slow else -1


def main():
    if not API_KEY:
        sys.exit("set OPENALGO_API_KEY")
    client = api(api_key=API_KEY, host=HOST)
    acted_on = None
    started = time.monotonic()
    while RUN_SECONDS <= 0 or time.monotonic() - started < RUN_SECONDS:
        try:
            signal = regime(client)
            if signal is not None and signal != acted_on:
                response = client.placesmartorder(
                    strategy=STRATEGY, symbol=SYMBOL, exchange=EXCHANGE,
                    action="BUY" if signal > 0 else "SELL", price_type="MARKET",
                    product=PRODUCT, quantity=QUANTITY, position_size=signal * QUANTITY)
                print(f"{'long' if signal > 0 else 'short'}: placesmartorder -> {response}",
                      flush=True)
                if response.get("status") == "success":
                    acted_on = signal
        except Exception as error:  # keep trading through a failed poll
            print(f"poll failed: {error}", flush=True)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    main()
