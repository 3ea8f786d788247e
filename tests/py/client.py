#!/usr/bin/env python3
"""A small kafka-python client for the Rust end-to-end tests: a third Kafka client, pure
Python, next to librdkafka and kafkajs. kafka-python sends other API versions than either
(FindCoordinator v4+, its own SASL code), so it reaches paths they do not.

Connection settings come from the environment (the same as tests/js/client.js):
  KAFKA_BOOTSTRAP   host:port[,host:port...]            (required)
  KAFKA_USER        SASL user name (SASL/PLAIN when set)
  KAFKA_PASSWORD    SASL password
  KAFKA_MECHANISM   plain (default), scram-sha-256 or scram-sha-512
  KAFKA_CA          PEM CA bundle: connect with TLS, verifying the server against it
  KAFKA_COMPRESSION gzip, snappy, lz4 or zstd for `produce` (default none)
  KAFKA_BOOTSTRAP_TIMEOUT_MS  how long kafka-python retries its bootstrap (default 10000)

Commands (one per run):
  create   TOPIC PARTITIONS        create a topic                  -> {"created": true}
  produce  TOPIC COUNT PREFIX      COUNT records to partition 0,
                                   keys PREFIX-i, values PREFIX:i   -> {"offsets": [..]}
  consume  TOPIC GROUP COUNT       join GROUP, read TOPIC from the group's committed
                                   position (else the beginning) until COUNT records, then
                                   commit                          -> {"records": [..]}
  topics                           list the topics                 -> {"topics": [..]}
  groups                           list the consumer groups        -> {"groups": [..]}

The answer is one JSON line on stdout. A failure prints {"error": {"type", "message",
"kafka_errors"}} on stdout and exits with status 2, so the caller can assert which error it
was. kafka-python retries a failed bootstrap connection (even a refused authentication)
until `bootstrap_timeout_ms` and then raises a timeout: `kafka_errors` lists the distinct
Kafka errors it logged on the way (e.g. SaslAuthenticationFailedError). kafka-python's own
logs go to stderr.
"""

import json
import logging
import os
import sys
import time


def usage():
    sys.stderr.write("usage: client.py create|produce|consume|topics|groups ARGS...\n")
    sys.exit(64)


def settings():
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        usage()
    s = {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": "kafka-python-test",
        "request_timeout_ms": 15000,
        # Fail fast: a test waits for an answer, not for the default 30 s bootstrap wait.
        "reconnect_backoff_ms": 100,
        "reconnect_backoff_max_ms": 1000,
        "bootstrap_timeout_ms": int(os.environ.get("KAFKA_BOOTSTRAP_TIMEOUT_MS", "10000")),
    }
    user = os.environ.get("KAFKA_USER")
    ca = os.environ.get("KAFKA_CA")
    if user:
        s["security_protocol"] = "SASL_SSL" if ca else "SASL_PLAINTEXT"
        s["sasl_mechanism"] = os.environ.get("KAFKA_MECHANISM", "plain").upper()
        s["sasl_plain_username"] = user
        s["sasl_plain_password"] = os.environ.get("KAFKA_PASSWORD", "")
    elif ca:
        s["security_protocol"] = "SSL"
    if ca:
        s["ssl_cafile"] = ca
        s["ssl_check_hostname"] = False
    return s


def create(topic, partitions):
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(**settings())
    try:
        admin.create_topics([NewTopic(topic, int(partitions), 1)])
        return {"created": True}
    finally:
        admin.close()


def produce(topic, count, prefix):
    from kafka import KafkaProducer

    compression = os.environ.get("KAFKA_COMPRESSION") or None
    producer = KafkaProducer(acks="all", compression_type=compression, linger_ms=5, **settings())
    try:
        futures = [
            producer.send(
                topic,
                key=f"{prefix}-{i}".encode(),
                value=f"{prefix}:{i}".encode(),
                partition=0,
            )
            for i in range(int(count))
        ]
        producer.flush(30)
        return {"offsets": [f.get(timeout=30).offset for f in futures]}
    finally:
        producer.close(5)


def consume(topic, group, count):
    from kafka import KafkaConsumer

    want = int(count)
    consumer = KafkaConsumer(
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # tansu answers a join after about half the session timeout: keep it short.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        fetch_max_wait_ms=200,
        **settings(),
    )
    try:
        consumer.subscribe([topic])
        records = []
        deadline = time.monotonic() + 60
        while len(records) < want and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for m in batch:
                    if len(records) < want:
                        records.append(
                            {
                                "topic": m.topic,
                                "partition": m.partition,
                                "offset": m.offset,
                                "key": m.key.decode() if m.key is not None else None,
                                "value": m.value.decode() if m.value is not None else None,
                            }
                        )
        if len(records) < want:
            raise TimeoutError(f"read {len(records)} of {want} records within 60 s")
        # Commit exactly what was read (not what the last poll fetched beyond it).
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        last = {}
        for r in records:
            last[(r["topic"], r["partition"])] = r["offset"]
        consumer.commit(
            {
                TopicPartition(t, p): OffsetAndMetadata(o + 1, "", -1)
                for (t, p), o in last.items()
            }
        )
        return {"records": records}
    finally:
        consumer.close()


def topics():
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**settings())
    try:
        return {"topics": sorted(consumer.topics())}
    finally:
        consumer.close()


def groups():
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**settings())
    try:
        # kafka-python 3: a dict per group, with the ListGroups response's field names.
        return {"groups": sorted(g["group_id"] for g in admin.list_groups())}
    finally:
        admin.close()


class KafkaErrors(logging.Handler):
    """Remembers the Kafka error classes named in kafka-python's warnings and errors."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.seen = []

    def emit(self, record):
        import re

        for name in re.findall(r"\b(\w+(?:Error|Exception))\b", record.getMessage()):
            if name not in self.seen:
                self.seen.append(name)


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    errors = KafkaErrors()
    logging.getLogger("kafka").addHandler(errors)
    if len(sys.argv) < 2:
        usage()
    command, args = sys.argv[1], sys.argv[2:]
    commands = {"create": (create, 2), "produce": (produce, 3), "consume": (consume, 3),
                "topics": (topics, 0), "groups": (groups, 0)}
    if command not in commands or len(args) != commands[command][1]:
        usage()
    try:
        answer = commands[command][0](*args)
    except Exception as e:  # every failure becomes the error document the caller asserts on
        error = {"type": type(e).__name__, "message": str(e), "kafka_errors": errors.seen}
        sys.stdout.write(json.dumps({"error": error}) + "\n")
        sys.exit(2)
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
