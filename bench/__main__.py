"""``python -m trio_codex.bench``: the benchmark report (see bench/README.md)."""

from .suite import main

main()
