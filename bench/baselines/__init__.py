"""The baselines `bench/load.py` measures the service against: each the bare tool in a process
of its own, under the same server (uvicorn, one worker, uvloop and httptools, no access log).

- `constant_fastapi`: a FastAPI app with one route returning the resolved body's bytes;
- `constant_raw`: a raw ASGI callable returning them (the server's ceiling);
- `query_raw`: a raw ASGI callable running the one resolve query on an asyncpg pool and
  returning the row as JSON (the ceiling of a miss);
- `naive_orm`: resolution as a typical FastAPI app does it, two ORM queries (the agent,
  then its active variant) and a Pydantic model.

The constant baselines return the service's response to the same request byte for byte:
`BENCH_BODY_FILE` names the file with its body, `BENCH_HEADERS_FILE` a JSON list of its
headers' [name, value] pairs (all but `date` and `server`, which uvicorn adds to every
response). `DATABASE_URL` names the database the query baselines read.
"""
