"""Benchmark peer: kafka-python producing oa's order-event envelopes to a broker.

The seed (upstream OpenAlgo) publishes with kafka-python: one `send` per event, the JSON
envelope serialised per event, key = user id. This script does the same with the envelope
and CloudEvents headers oa writes, acks=all, so both producers do equal work.

Environment:
  KAFKA_BOOTSTRAP, KAFKA_TOPIC, EVENTS (how many), USERS (distinct keys, default 100),
  COMPRESSION (none|gzip|snappy|lz4|zstd), BATCH_SIZE (bytes), LINGER_MS.
Prints one JSON line: {"events", "seconds", "events_per_s"}.
"""

import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone

from kafka import KafkaProducer


def main():
    events = int(os.environ["EVENTS"])
    users = int(os.environ.get("USERS", "100"))
    compression = os.environ.get("COMPRESSION", "snappy")
    producer = KafkaProducer(
        bootstrap_servers=os.environ["KAFKA_BOOTSTRAP"],
        acks="all",
        compression_type=None if compression == "none" else compression,
        batch_size=int(os.environ.get("BATCH_SIZE", "16384")),
        linger_ms=int(os.environ.get("LINGER_MS", "10")),
        key_serializer=lambda key: key.encode("utf-8"),
        value_serializer=lambda value: json.dumps(value, separators=(",", ":")).encode("utf-8"),
    )
    topic = os.environ["KAFKA_TOPIC"]
    # Warm-up: metadata and connections, outside the timed part.
    producer.send(topic, key="warmup", value={"warmup": True}).get(timeout=30)

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
        producer.send(topic, key=user, value=envelope, headers=headers)
    producer.flush(timeout=120)
    seconds = time.perf_counter() - started
    producer.close()
    print(json.dumps({"events": events, "seconds": seconds, "events_per_s": events / seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
