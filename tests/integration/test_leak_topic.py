"""trace-leaks --publish: one message per campaign on the leak-candidates topic (real broker)."""

from __future__ import annotations

import orjson
import pytest
from kafka import KafkaConsumer  # type: ignore[import-untyped, unused-ignore]

from streams.cli import main

START = "2026-11-01T00:00:00+08:00"


def test_publish_sends_every_campaign(
    kafka_bootstrap: str,
    unique: str,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cdrs = f"{tmp_path}/cdrs.jsonl"
    argv = ["simulate", "--leaks", "--days", "7", "--subscribers", "1000", "--start", START]
    assert main([*argv, "--out", cdrs]) == 0
    topic = f"leaks-{unique}"
    monkeypatch.setenv("DIALWATCH_KAFKA", kafka_bootstrap)
    monkeypatch.setenv("DIALWATCH_LEAK_CANDIDATES_TOPIC", topic)
    monkeypatch.setenv("DIALWATCH_TOPIC_PARTITIONS", "2")
    capsys.readouterr()
    assert main(["trace-leaks", "--publish", cdrs]) == 0
    out, err = capsys.readouterr()
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert lines and f"published {len(lines)} campaigns to {topic}" in err
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    got = {}
    for message in consumer:
        got[message.key.decode()] = orjson.loads(message.value)
        if len(got) == len(lines):
            break
    consumer.close()
    assert got == {line["campaign_id"]: line for line in lines}
    assert any(line["candidates"] for line in lines)
