"""Reads oa's order-event records back with kafka-python, a Kafka client that is not ours.

Environment:
  KAFKA_BOOTSTRAP   host:port of the broker
  KAFKA_TOPIC       topic to read from its beginning
  EXPECT            stop after this many records; when unset, read up to the end offsets
                    the topic has when the script starts
  TIMEOUT_S         give up after this many seconds (default 60)
  KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD,
  KAFKA_SSL_CA_LOCATION, KAFKA_SSL_CERTIFICATE_LOCATION, KAFKA_SSL_KEY_LOCATION,
  KAFKA_SSL_ENDPOINT_IDENTIFICATION
                    oa's security settings, mapped to kafka-python's (kafka_security.py)

Prints one JSON line per record:
  {"partition", "offset", "key", "value", "headers": [[name, value], ...], "timestamp",
   "expected_partition"}
where expected_partition is where kafka-python's DefaultPartitioner (its murmur2, as the
Java client) puts the key. Then one summary line {"batches": [{"codec", "records", "base_offset"}]} listing the compression codec of every record batch read, as found on the wire.
"""

import json
import os
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2
from kafka.record.default_records import DefaultRecordBatch

from kafka_security import security_options

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
BATCHES = []
_original_iter = DefaultRecordBatch.__iter__


def _recording_iter(self):
    BATCHES.append({"codec": CODECS.get(self.compression_type, str(self.compression_type)),
                    "records": self.records_count, "base_offset": self.base_offset})
    return _original_iter(self)


DefaultRecordBatch.__iter__ = _recording_iter


def main():
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]
    topic = os.environ["KAFKA_TOPIC"]
    expect = int(os.environ["EXPECT"]) if os.environ.get("EXPECT") else None
    deadline = time.monotonic() + float(os.environ.get("TIMEOUT_S", "60"))

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        request_timeout_ms=30000,
        **security_options(),
    )
    partitions = None
    while partitions is None and time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            time.sleep(0.2)
    if partitions is None:
        print(f"topic {topic} not found on {bootstrap}", file=sys.stderr)
        return 2
    partitions = sorted(partitions)
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    consumer.seek_to_beginning()

    def partitioner(key):
        # kafka-python's DefaultPartitioner.partition for a keyed record (as the Java client).
        return partitions[(murmur2(key) & 0x7fffffff) % len(partitions)]

    assigned = [TopicPartition(topic, p) for p in partitions]
    end_offsets = consumer.end_offsets(assigned) if expect is None else None

    def done():
        if expect is not None:
            return seen >= expect
        return all(consumer.position(tp) >= end for tp, end in end_offsets.items())

    seen = 0
    while not done() and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=200, max_records=10000)
        for tp, records in sorted(polled.items(), key=lambda item: item[0].partition):
            for record in records:
                key = record.key
                print(json.dumps({
                    "partition": tp.partition,
                    "offset": record.offset,
                    "key": key.decode("utf-8") if key is not None else None,
                    "value": record.value.decode("utf-8") if record.value is not None else None,
                    "headers": [[name, value.decode("utf-8")] for name, value in record.headers],
                    "timestamp": record.timestamp,
                    "expected_partition": partitioner(key) if key is not None else None,
                }))
                seen += 1
    # Batch records are only counted once: a batch can be re-read when a fetch splits it.
    unique = {}
    for batch in BATCHES:
        unique[batch["base_offset"], batch["codec"], batch["records"]] = batch
    print(json.dumps({"batches": list(unique.values())}))
    complete = done()
    consumer.close()
    if not complete:
        wanted = expect if expect is not None else f"the end offsets {end_offsets}"
        print(f"only {seen} records (wanted {wanted}) arrived before the timeout", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
