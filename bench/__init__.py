"""Benchmarks: each one prints ONE JSON object on stdout, on loopback, and stops by itself.

    python -m bench.poll_scale --jobs 10000 --interval 10 --duration 60
    python -m bench.latency --jobs 40 --interval 5
    python -m bench.ceiling --jobs 1000 --duration 5
    python -m bench.naive_poller --mathfi URL --slack URL --keys FILE --duration 5

See docs/benchmarks.md for what they measure and the figures of one run.
"""
