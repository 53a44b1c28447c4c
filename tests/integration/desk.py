"""A worker serving the operator's API and console, fed the labelled scenario with mvno
numbers in approve mode (so the approval queue has entries), for the API and console tests.
``conftest.api_worker`` starts one per session; the tests share it."""

from __future__ import annotations

import secrets
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from streams.tools import simulate as sim
from streams.tools.scenario import Scenario, generate_scenario
from tests.integration.test_faults import start, wait_caught_up
from tests.integration.test_interception import PARTITIONS, SCENARIO, worker_env

ROLES = ("read-only", "operator", "admin")


@dataclass
class ApiWorker:
    url: str
    env: dict[str, str]
    tokens: dict[str, str]  # role -> token
    names: dict[str, str]  # role -> token name
    redis_url: str
    prefix: str
    scenario: Scenario
    log: Path
    proc: subprocess.Popen[bytes]

    def call(
        self, method: str, path: str, role: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON body) of one API call with ``role``'s token."""
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if role is not None:
            request.add_header("Authorization", f"Bearer {self.tokens[role]}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, orjson.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def key(self, kind: str, number: str) -> str:
        return f"{self.prefix}:{{il}}:{kind}:{number}"


def run_api_worker(kafka: str, redis_url: str, tmp: Path) -> Iterator[ApiWorker]:
    unique = uuid.uuid4().hex[:10]
    tokens = {role: secrets.token_urlsafe(24) for role in ROLES}
    names = {"read-only": "reader", "operator": "olga", "admin": "root-admin"}
    tokens_file = tmp / "tokens.txt"
    tokens_file.write_text(
        "# name role token\n" + "".join(f"{names[r]} {r} {tokens[r]}\n" for r in ROLES)
    )
    tokens_file.chmod(0o600)
    scenario = generate_scenario(SCENARIO)
    allowlist = tmp / "allowlist.txt"
    allowlist.write_text("\n".join(scenario.allowlist) + "\n")
    env = worker_env(
        kafka, redis_url, unique,
        DIALWATCH_API_TOKENS_FILE=str(tokens_file),
        DIALWATCH_ALLOWLIST_FILE=str(allowlist),
        DIALWATCH_INTERCEPT_MODES="mvno=approve",
    )  # fmt: skip
    log = tmp / "worker.log"
    proc = start(env, log)
    try:
        sim.produce(scenario.records, kafka, env["DIALWATCH_CDR_TOPIC"], PARTITIONS, 200)
        wait_caught_up(redis.Redis.from_url(redis_url), env, proc, log)
        worker = ApiWorker(
            f"http://127.0.0.1:{env['DIALWATCH_WEB_PORT']}", env, tokens, names, redis_url,
            env["DIALWATCH_KEY_PREFIX"], scenario, log, proc,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while True:  # ready: broker probed, both Redis answer, the alert tail read
            status, body = worker.call("GET", "/readyz")
            if status == 200:
                _, recent = worker.call("GET", "/alerts/recent", "read-only")
                if recent["caught_up"] and recent["alerts"]:
                    break
            assert time.monotonic() < deadline, (status, body)
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        yield worker
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
