"""Runs the real ClickHouse engine (clickhouse-local from the chdb-core wheel) as a server.

Used only by scripts/stack. clickhouse-local reads ./config.xml from its working directory,
so this chdirs into the instance directory after importing chdb (the import itself starts an
in-memory engine that would read the same file). The engine opens its HTTP and native TCP
listeners, then runs one query that never finishes, which keeps the process alive; stopping
kills that query (scripts/stack sends KILL QUERY over HTTP) and the process exits.
"""

import os
import sys

KEEPALIVE_TAG = "trackledger-keepalive"


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: serve.py INSTANCE_DIR DATA_DIR", file=sys.stderr)
        return 2
    instance_dir, data_dir = (os.path.abspath(p) for p in sys.argv[1:])
    os.chdir("/")
    from chdb import _chdb  # noqa: E402  (import after leaving the instance dir, see above)

    os.chdir(instance_dir)
    query = (
        "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
        f"SELECT /* {KEEPALIVE_TAG} */ sleepEachRow(0.2) FROM system.numbers FORMAT Null "
        "SETTINGS max_block_size = 1, max_execution_time = 0"
    )
    try:
        _chdb.query(query, "CSV", path=data_dir)
    except Exception as exc:  # the engine reports a killed query as an error: that is a stop
        message = str(exc)
        if "QUERY_WAS_CANCELLED" in message or "killed" in message.lower():
            return 0
        print(f"clickhouse engine stopped: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
