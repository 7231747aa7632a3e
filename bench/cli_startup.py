"""How much does ``autovibe --help`` cost on top of importing Typer?

Runs each command N times as a fresh subprocess (interleaved, so machine noise hits both alike),
prints the medians and their ratio, and exits 1 when the ratio exceeds the target (1.3)::

    python bench/cli_startup.py            # N=20
    python bench/cli_startup.py -n 50 --target 1.3

The baseline is measured in the same run, so the ratio means the same on a fast laptop and a slow
CI runner. Both commands pay for interpreter start-up and site-packages; what the ratio shows is
what autovibe adds (its own modules, building the root command, formatting help).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

BASELINE = [sys.executable, "-c", "import typer"]


def _autovibe_command() -> list[str]:
    # The console script is what users run; fall back to -m when it is not on PATH.
    script = shutil.which("autovibe")
    return [script, "--help"] if script else [sys.executable, "-m", "autovibe", "--help"]


def _time_once(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="runs per command (default 20)")
    parser.add_argument("--target", type=float, default=1.3, help="maximum allowed ratio (default 1.3)")
    options = parser.parse_args()

    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTOVIBE_")}
    autovibe = _autovibe_command()
    # One warm-up each so the first measured run does not pay for cold .pyc compilation.
    _time_once(BASELINE, env)
    _time_once(autovibe, env)
    baseline_runs: list[float] = []
    autovibe_runs: list[float] = []
    for _ in range(options.n):
        baseline_runs.append(_time_once(BASELINE, env))
        autovibe_runs.append(_time_once(autovibe, env))

    base = statistics.median(baseline_runs)
    ours = statistics.median(autovibe_runs)
    ratio = ours / base
    print(f"runs per command:           {options.n}")
    print(f"python -c 'import typer':   median {base * 1000:7.1f} ms")
    print(f"{' '.join(['autovibe', '--help']):<27} median {ours * 1000:7.1f} ms")
    print(f"ratio:                      {ratio:.2f} (target <= {options.target})")
    return 0 if ratio <= options.target else 1


if __name__ == "__main__":
    sys.exit(main())
