"""expiry and instruments through the official OpenAlgo SDK (openalgo==1.0.47, data.py).

Environment: OA_HOST, OA_APIKEY and OA_CONTRACTS_EXPECTED, a JSON object:
{"nifty_expiries": ["30-DEC-25", ...], "nfo_count": 1700, "all_count": 1736}
computed by the Rust test from the bundled universe. Exits non-zero on the first failed check.
"""

import pandas as pd

from sdk_checks import client, expected_values, fail

expected = expected_values("OA_CONTRACTS_EXPECTED")


result = client.expiry(symbol="NIFTY", exchange="NFO", instrumenttype="options")
if result.get("status") != "success" or result.get("data") != expected["nifty_expiries"]:
    fail(f"expiry NIFTY options: {result!r}")
print(f"ok   expiry NIFTY options: {result['data'][:3]} ...")

nfo = client.instruments(exchange="NFO")
if not isinstance(nfo, pd.DataFrame) or len(nfo) != expected["nfo_count"]:
    fail(f"instruments NFO: {type(nfo)} {len(nfo) if hasattr(nfo, '__len__') else nfo!r}")
for column in ["symbol", "brsymbol", "name", "exchange", "token", "expiry", "strike", "lotsize",
               "instrumenttype", "tick_size"]:
    if column not in nfo.columns:
        fail(f"instruments NFO: no column {column} in {list(nfo.columns)}")
# The generated option universe's calls carry their expiry and strike.
calls = nfo[(nfo["instrumenttype"] == "CE") & (nfo["expiry"] != "")]
if len(calls) < 100 or not (calls["strike"] > 0).all():
    fail(f"instruments NFO: {len(calls)} calls with an expiry, strikes {calls['strike'].min()}")
print(f"ok   instruments NFO: {len(nfo)} rows")

# Without an exchange the SDK asks every exchange it knows and concatenates them.
everything = client.instruments()
if not isinstance(everything, pd.DataFrame) or len(everything) != expected["all_count"]:
    fail(f"instruments (all): {len(everything) if hasattr(everything, '__len__') else everything!r}")
print(f"ok   instruments (all): {len(everything)} rows")
print("all contracts SDK checks passed")
