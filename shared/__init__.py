"""What the projector, the API, `verify` and other services share, in layers.

- `shared.model`: the pure status model (rows + clock in, document and answer out); no I/O.
- `shared.redis_store` and `shared.postgres`: the adapters that store the model in Redis and read it from Postgres.
- `shared.settings`, `shared.wiring`: configuration, and building clients from it.
"""
