"""Benchmarks of the daemon against the Arting emulator, each figure beside a baseline
measured in the same run. Run ``python -m bench --help``; results are in RESULTS.md."""
