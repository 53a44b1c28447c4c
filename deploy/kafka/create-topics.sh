#!/bin/sh
# Creates the topics an operator owns, with the production settings of docs/operations.md
# ("Topics"). The worker creates its internal topics itself (derived, repartition, complaints,
# audit, interceptions) with DIALWATCH_TOPIC_PARTITIONS and DIALWATCH_TOPIC_REPLICATION;
# their retention and compaction settings are applied below once they exist. Idempotent.
set -eu
BOOTSTRAP="${BOOTSTRAP:-kafka-1:9092}"
PARTITIONS="${PARTITIONS:-12}"
BIN="${KAFKA_BIN:-/opt/kafka/bin}"
DAY=86400000

create() {  # name, then --config key=value pairs
  name="$1"; shift
  "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions "$PARTITIONS" --replication-factor 3 \
    --config min.insync.replicas=2 "$@"
}

create cdrs --config retention.ms=$((7 * DAY)) --config message.timestamp.type=LogAppendTime \
  --config max.message.bytes=4194304
create dialwatch.alerts --config retention.ms=$((30 * DAY))
create dialwatch.deadletter --config retention.ms=$((14 * DAY)) --config max.message.bytes=1048576
create dialwatch.derived --config retention.ms=$((7 * DAY))
create dialwatch.repartition --config retention.ms=$((7 * DAY))
create complaints --config retention.ms=$((90 * DAY))
create dialwatch.audit --config retention.ms=$((400 * DAY))
create dialwatch.interceptions --config cleanup.policy=compact,delete \
  --config retention.ms=$((30 * DAY))
