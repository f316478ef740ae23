"""`run_bench.py ab BASE [HEAD]`: two revisions measured in one interleaved run.

HEAD's harness is the instrument and each side's `impls/` the specimen: K long-lived worker
processes per side import that side's tree (revisions.py) under HEAD's harness (worker.py, sides.py),
the parent alternates the sides round by round on the same cases and inputs, round r on each side's
(r mod K)-th worker (runner.py), and every case's verdict comes from its paired per-round ratios,
judged over the K worker pairs (paired.py).

Nothing here imports `impls` at import time: a worker must choose which tree `impls` is first.
"""
