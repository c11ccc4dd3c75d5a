"""holdings, margin, holidays and timings through the official OpenAlgo SDK (openalgo==1.0.47,
account.py and utilities.py).

Environment: OA_HOST, OA_APIKEY. The Rust test prices NSE:SBIN at 800.0 (bid 799.9, ask 800.1)
before running it. Exits non-zero on the first failed check.
"""

from sdk_checks import check, client

check("holdings", client.holdings(),
      lambda r: r["data"]["holdings"] == []
      and set(r["data"]["statistics"]) == {"totalholdingvalue", "totalinvvalue",
                                           "totalprofitandloss", "totalpnlpercentage"})

margin = client.margin(positions=[
    {"symbol": "SBIN", "exchange": "NSE", "action": "BUY", "product": "MIS",
     "pricetype": "MARKET", "quantity": "10"},
    {"symbol": "SBIN", "exchange": "NSE", "action": "SELL", "product": "CNC",
     "pricetype": "LIMIT", "quantity": "1", "price": "805"},
])
check("margin", margin, lambda r: abs(r["data"]["total_margin_required"] - (1600.2 + 805.0)) < 1e-6)

holidays = client.holidays(year=2026)
check("holidays 2026", holidays,
      lambda r: r["year"] == 2026 and r["timezone"] == "Asia/Kolkata"
      and any(day["date"] == "2026-10-02" and "MCX" in day["closed_exchanges"] for day in r["data"]))

timings = client.timings(date="2026-03-03")
check("timings on Holi 2026", timings,
      lambda r: [row["exchange"] for row in r["data"]] == ["MCX"])
today = client.timings()
check("timings today", today, lambda r: isinstance(r["data"], list))
print("all account SDK checks passed")
