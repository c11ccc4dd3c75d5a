"""An external system (ESB) producing commands for oa with kafka-python, a client that is not ours.

Environment:
  KAFKA_BOOTSTRAP   host:port of the broker
  KAFKA_TOPIC       the ESB topic (waits up to TIMEOUT_S for it to exist: oa creates it)
  MESSAGES          JSON array of {"key": str or null, "value": str}: each value is sent as
                    its UTF-8 bytes exactly (so malformed payloads can be sent too), in order.
                    Optional per message: "key_id" and "secret" sign the value with
                    esb_sign.oa_signature (the snippet of docs/esb.md); "signature" sends that
                    text as the oa_signature header instead (malformed or forged headers)
  COMPRESSION       none|gzip|lz4|zstd (default lz4: tansu 0.6 cannot serve snappy)
  TIMEOUT_S         default 60

Prints one JSON line per record sent: {"partition", "offset"}.
"""

import json
import os
import sys
import time

from kafka import KafkaProducer
from kafka.errors import KafkaError

from esb_sign import oa_signature


def main():
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]
    topic = os.environ["KAFKA_TOPIC"]
    messages = json.loads(os.environ["MESSAGES"])
    compression = os.environ.get("COMPRESSION", "lz4")
    deadline = time.monotonic() + float(os.environ.get("TIMEOUT_S", "60"))

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=None if compression == "none" else compression,
        linger_ms=0,
        max_in_flight_requests_per_connection=1,
    )
    while not producer.partitions_for(topic) and time.monotonic() < deadline:
        time.sleep(0.2)
    for message in messages:
        key = message.get("key")
        value = message["value"].encode("utf-8")
        headers = []
        if "key_id" in message:
            headers.append(("oa_signature", oa_signature(message["key_id"], message["secret"], value)))
        elif "signature" in message:
            headers.append(("oa_signature", message["signature"].encode("utf-8")))
        while True:
            try:
                metadata = producer.send(
                    topic,
                    key=key.encode("utf-8") if key is not None else None,
                    value=value,
                    headers=headers,
                ).get(timeout=30)
                break
            except KafkaError as error:
                if time.monotonic() > deadline:
                    print(f"cannot send to {topic}: {error}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        print(json.dumps({"partition": metadata.partition, "offset": metadata.offset}))
    producer.flush()
    producer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
