"""Benchmark peer: kafka-python producing oa's order-event envelopes to a broker.

The seed (upstream OpenAlgo) publishes with kafka-python: one `send` per event, the JSON
envelope serialised per event, key = user id. This script does the same with the envelope
and CloudEvents headers oa writes, acks=all, so both producers do equal work.

Every send's result is checked: only acknowledged sends count, as oa counts only events the
broker acknowledged.

Environment:
  KAFKA_BOOTSTRAP, KAFKA_TOPIC, EVENTS (how many), USERS (distinct keys, default 100),
  COMPRESSION (none|gzip|snappy|lz4|zstd), BATCH_SIZE (bytes), LINGER_MS, and oa's security
  variables (kafka_security.py).
Prints one JSON line: {"events", "acked", "failed", "seconds", "events_per_s"}.
"""

import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone

from kafka import KafkaProducer

from kafka_security import security_options


def main():
    events = int(os.environ["EVENTS"])
    users = int(os.environ.get("USERS", "100"))
    compression = os.environ.get("COMPRESSION", "lz4")
    producer = KafkaProducer(
        bootstrap_servers=os.environ["KAFKA_BOOTSTRAP"],
        acks="all",
        compression_type=None if compression == "none" else compression,
        batch_size=int(os.environ.get("BATCH_SIZE", "16384")),
        linger_ms=int(os.environ.get("LINGER_MS", "10")),
        key_serializer=lambda key: key.encode("utf-8"),
        value_serializer=lambda value: json.dumps(value, separators=(",", ":")).encode("utf-8"),
        **security_options(),
    )
    topic = os.environ["KAFKA_TOPIC"]
    # Warm-up: metadata and connections, outside the timed part.
    producer.send(topic, key="warmup", value={"warmup": True}).get(timeout=30)

    futures = []
    started = time.perf_counter()
    for index in range(events):
        user = f"user{index % users}"
        event_id = str(uuid.uuid4())
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        envelope = {
            "id": event_id,
            "event_type": "order_event",
            "timestamp": now,
            "user_id": user,
            "source": "openalgo",
            "version": "1.0",
            "data": {
                "symbol": "SBIN", "action": "BUY", "orderid": str(index), "exchange": "NSE",
                "price_type": "MARKET", "product_type": "MIS", "mode": "live",
            },
        }
        headers = [
            ("ce_id", event_id.encode()), ("ce_type", b"order_event"),
            ("ce_source", b"openalgo"), ("ce_time", now.encode()),
            ("ce_specversion", b"1.0"), ("content-type", b"application/json"),
        ]
        futures.append(producer.send(topic, key=user, value=envelope, headers=headers))
    producer.flush(timeout=120)
    acked = 0
    failed = 0
    for future in futures:
        try:
            future.get(timeout=0)
            acked += 1
        except Exception:  # noqa: BLE001 - any failed send is simply not counted
            failed += 1
    seconds = time.perf_counter() - started
    producer.close()
    print(json.dumps({"events": events, "acked": acked, "failed": failed, "seconds": seconds,
                      "events_per_s": acked / seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
