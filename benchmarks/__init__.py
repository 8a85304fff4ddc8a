"""Benchmark scripts of facedis-aug (not part of the installed package).

Run them from the repository root as modules, e.g. `python -m benchmarks.bench_decompose --quick`;
each writes JSON + Markdown (+ PNG) under benchmarks/results/ with the command, machine, load and date.
"""
