"""DuckDB as a peer of ``dialwatch scan``: the seed's one rule over the same JSON Lines file.

    python -m benchmarks.duckdb_peer FILE.jsonl

One thread. The rule: a caller making 250 calls in any 40 minutes; each such caller's first
crossing. It reads the file, evaluates the query (benchmarks/README.md) and prints one JSON
object: rows, callers found, seconds (from connecting to the last result row).
"""

from __future__ import annotations

import sys
import time

import duckdb
import orjson

QUERY = """
SELECT caller, min(start_time) AS first_crossing
FROM (
    SELECT caller, start_time,
           count(*) OVER (
               PARTITION BY caller ORDER BY start_time
               RANGE BETWEEN INTERVAL 40 MINUTES PRECEDING AND CURRENT ROW
           ) AS calls
    FROM cdrs
)
WHERE calls >= 250
GROUP BY caller
ORDER BY caller
"""
READ = """
CREATE TEMP TABLE cdrs AS
SELECT caller, start_time
FROM read_json(?, format = 'newline_delimited',
               columns = {'caller': 'VARCHAR', 'start_time': 'TIMESTAMPTZ'})
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.duckdb_peer FILE.jsonl", file=sys.stderr)
        return 2
    started = time.perf_counter()
    con = duckdb.connect(config={"threads": 1})
    con.execute(READ, [args[0]])
    fetched = con.execute("SELECT count(*) FROM cdrs").fetchone()
    rows = int(fetched[0]) if fetched else 0
    callers = con.execute(QUERY).fetchall()
    seconds = time.perf_counter() - started
    print(orjson.dumps({"rows": rows, "callers": len(callers), "seconds": seconds}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
