"""The benchmark profile-status ships: `python -m bench [--quick] [--out FILE]`.

It builds its own database and Redis key prefix, measures the API against three
reference servers with wrk, measures the projector's throughput, lag, per-change
cost and memory, prints one table, and removes everything it created.
See BENCHMARKS.md.
"""
