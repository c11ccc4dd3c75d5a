"""history through the official OpenAlgo SDK (openalgo==1.0.47, data.py `history`).

Environment: OA_HOST, OA_APIKEY and OA_HISTORY_EXPECTED, a JSON object:
{"symbol": "SBIN", "exchange": "NSE", "date": "2026-11-30",
 "intervals": {"1m": [[timestamp, open, high, low, close, volume], ...], "5m": ..., "D": ...,
               "W": ...}}
with the candles the Rust test computed from the ticks it published. Exits non-zero on the
first failed check.
"""

import json
import os
import sys

import pandas as pd
from openalgo import api

client = api(api_key=os.environ["OA_APIKEY"], host=os.environ["OA_HOST"])
expected = json.loads(os.environ["OA_HISTORY_EXPECTED"])


def fail(message):
    print(f"FAIL {message}")
    sys.exit(1)


for interval, rows in expected["intervals"].items():
    df = client.history(symbol=expected["symbol"], exchange=expected["exchange"],
                        interval=interval, start_date=expected["date"],
                        end_date=expected["date"])
    if not isinstance(df, pd.DataFrame):
        fail(f"history {interval}: expected a DataFrame, got {df!r}")
    if list(df.columns) != ["close", "high", "low", "oi", "open", "volume"]:
        fail(f"history {interval}: columns {list(df.columns)}")
    if df.index.name != "timestamp" or len(df) != len(rows):
        fail(f"history {interval}: index {df.index.name}, {len(df)} rows, expected {len(rows)}")
    for (stamp, candle), (timestamp, open_, high, low, close, volume) in zip(df.iterrows(), rows):
        when = pd.Timestamp(timestamp, unit="s")
        if interval not in ("D", "W", "M"):
            # The SDK shows intraday candles in Indian time; D, W and M as their date.
            when = when.tz_localize("UTC").tz_convert("Asia/Kolkata")
        got = (stamp, candle["open"], candle["high"], candle["low"], candle["close"],
               candle["volume"])
        want = (when, open_, high, low, close, volume)
        if got != want:
            fail(f"history {interval}: row {got} != {want}")
    print(f"ok   history {interval}: {len(df)} candles, first at {df.index[0]}")

# An interval oa does not serve: the SDK returns an error dict (HTTP 400 with the message).
error = client.history(symbol=expected["symbol"], exchange=expected["exchange"], interval="7m",
                       start_date=expected["date"], end_date=expected["date"])
if not (isinstance(error, dict) and error.get("status") == "error" and error.get("code") == 400
        and "interval: expected one of 1m" in error.get("message", "")):
    fail(f"history 7m: expected an error naming interval, got {error!r}")
print("ok   history 7m refused")

# A day without candles: the SDK's own "no data" answer.
empty = client.history(symbol=expected["symbol"], exchange=expected["exchange"], interval="1m",
                       start_date="2020-01-01", end_date="2020-01-01")
if not (isinstance(empty, dict) and empty.get("error_type") == "no_data"):
    fail(f"history without candles: {empty!r}")
print("ok   history without candles")
print("all history SDK checks passed")
