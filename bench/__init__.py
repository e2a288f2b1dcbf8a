"""gpuenhance benchmarks: speed suites (pytest-benchmark), a restoration-quality table and a report.

Run ``python -m pytest bench --smoke -q`` for a quick check that every case runs, and
``python -m bench.report`` for the full measurements (see bench/README.md).
"""
