"""The project's scripts. The bench's modules import each other as ``scripts.bench_*``, so that
tests import them as a package; ``python scripts/bench.py`` runs as before."""
