"""Real services for the suite: a Kafka-protocol broker and a redis-server.

``DIALWATCH_TEST_KAFKA`` (bootstrap servers) and ``DIALWATCH_TEST_REDIS`` (URL) point the suite
at existing services, e.g. a real Apache Kafka. Otherwise the suite starts Tansu and
redis-server itself on free loopback ports. A missing service fails the run; nothing is skipped.

These fixtures live here only, so a test under tests/unit that asks for one errors. Every test
collected under this folder is marked ``e2e`` (``pytest -m "not e2e"`` is the unit-only run).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from streams.tools.services import Service, start_broker, start_redis

if TYPE_CHECKING:
    from tests.integration.desk import ApiWorker

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest hook sees the whole session's items, not only this folder's.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def redis_service() -> Iterator[Service | None]:
    if os.environ.get("DIALWATCH_TEST_REDIS"):
        yield None
        return
    service = start_redis()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_url(redis_service: Service | None) -> str:
    return os.environ.get("DIALWATCH_TEST_REDIS") or (
        redis_service.address if redis_service else ""
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("DIALWATCH_TEST_KAFKA")
    if external:
        yield external
        return
    service = start_broker()
    yield service.address
    service.stop()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def api_worker(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiWorker]:
    """One worker serving the API and console, fed the scenario (tests/integration/desk.py)."""
    from tests.integration.desk import run_api_worker

    yield from run_api_worker(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("api"))
