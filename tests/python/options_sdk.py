"""The option calls through the official OpenAlgo SDK (openalgo==1.0.47, options.py, data.py).

Environment: OA_HOST, OA_APIKEY and OA_OPTIONS_EXPECTED, a JSON object computed by the Rust
test from the market it priced:
{"expiry": "08DEC26", "atm_strike": 26000.0, "spot": 26012.0, "atm_ce": "NIFTY08DEC2626000CE",
 "itm2_ce": ..., "otm2_ce": ..., "otm4_ce": ..., "atm_iv": 13.0}
multioptiongreeks has no SDK function in 1.0.47; it is posted with httpx, the SDK's own HTTP
client. Exits non-zero on the first failed check.
"""

import httpx

from sdk_checks import APIKEY, HOST, check, client, expected_values

expected = expected_values("OA_OPTIONS_EXPECTED")
expiry = expected["expiry"]


symbol = client.optionsymbol(underlying="NIFTY", exchange="NSE_INDEX", expiry_date=expiry,
                             offset="ITM2", option_type="CE")
check("optionsymbol ITM2 CE", symbol,
      lambda r: r["symbol"] == expected["itm2_ce"] and r["exchange"] == "NFO"
      and r["lotsize"] == 75 and r["underlying_ltp"] == expected["spot"]
      and {"tick_size", "freeze_qty"} <= set(r))

chain = client.optionchain(underlying="NIFTY", exchange="NSE_INDEX", expiry_date=expiry,
                           strike_count=3)


def chain_ok(r):
    rows = r["chain"]
    atm = [row for row in rows if row["strike"] == expected["atm_strike"]]
    return (r["atm_strike"] == expected["atm_strike"] and len(rows) == 7 and len(atm) == 1
            and atm[0]["ce"]["symbol"] == expected["atm_ce"] and atm[0]["ce"]["label"] == "ATM"
            and atm[0]["pe"]["label"] == "ATM" and atm[0]["ce"]["ltp"] > 0
            and rows[0]["ce"]["label"] == "ITM3" and rows[0]["pe"]["label"] == "OTM3")


check("optionchain strike_count=3", chain, chain_ok)

synthetic = client.syntheticfuture(underlying="NIFTY", exchange="NSE_INDEX", expiry_date=expiry)
check("syntheticfuture", synthetic,
      lambda r: r["atm_strike"] == expected["atm_strike"]
      and abs(r["synthetic_future_price"] - expected["spot"]) < 5)

greeks = client.optiongreeks(symbol=expected["atm_ce"], exchange="NFO")
check("optiongreeks ATM CE", greeks,
      lambda r: abs(r["implied_volatility"] - expected["atm_iv"]) < 0.3
      and 0.3 < r["greeks"]["delta"] < 0.7 and r["greeks"]["theta"] < 0 and r["greeks"]["vega"] > 0)

multi = httpx.post(f"{HOST}/api/v1/multioptiongreeks", timeout=30, json={
    "apikey": APIKEY,
    "symbols": [{"symbol": expected["atm_ce"], "exchange": "NFO"},
                {"symbol": expected["otm2_ce"], "exchange": "NFO"}],
}).json()
check("multioptiongreeks", multi,
      lambda r: r["summary"] == {"total": 2, "success": 2, "failed": 0}
      and [item["symbol"] for item in r["data"]] == [expected["atm_ce"], expected["otm2_ce"]])

order = client.optionsorder(strategy="sdk", underlying="NIFTY", exchange="NSE_INDEX",
                            expiry_date=expiry, offset="ATM", option_type="CE", action="BUY",
                            quantity=75, price_type="MARKET", product="NRML")
check("optionsorder ATM CE", order,
      lambda r: r["symbol"] == expected["atm_ce"] and r["orderid"] and r["offset"] == "ATM"
      and r["option_type"] == "CE" and r["underlying_ltp"] == expected["spot"])

spread = client.optionsmultiorder(strategy="sdk", underlying="NIFTY", exchange="NSE_INDEX",
                                  expiry_date=expiry, legs=[
                                      {"offset": "OTM2", "option_type": "CE", "action": "SELL",
                                       "quantity": 75},
                                      {"offset": "OTM4", "option_type": "CE", "action": "BUY",
                                       "quantity": 75},
                                  ])
check("optionsmultiorder call spread", spread,
      lambda r: [(leg["leg"], leg["symbol"], leg["status"]) for leg in r["results"]]
      == [(1, expected["otm2_ce"], "success"), (2, expected["otm4_ce"], "success")])
print("all options SDK checks passed")
