"""Start-up time of the mailflow command against sqlite-utils, in the same run.

    .venv/bin/python bench/startup.py [--runs 5]

Times ``mailflow --help``, ``mailflow status`` (on a site made by ``mailflow init`` in a
scratch folder, its database created by a first run) and ``sqlite-utils --help``, each as
a fresh process, taking turns so that a busy machine slows all three alike. Bytecode is
cached, as pip does for an installed wheel: one untimed run of each comes first, and
PYTHONDONTWRITEBYTECODE is removed from the children's environment. Prints the median of
each and the ratios to sqlite-utils (goal <= 1.3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONDONTWRITE", "MAILFLOW"))}
    mailflow, sqlite_utils = str(BIN / "mailflow"), str(BIN / "sqlite-utils")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([mailflow, "init", folder], env=env, check=True, stdout=subprocess.DEVNULL)
        config = str(Path(folder) / "mailflow.toml")
        commands = {
            "sqlite-utils --help": [sqlite_utils, "--help"],
            "mailflow --help": [mailflow, "--help"],
            "mailflow status": [mailflow, "-c", config, "status"],
        }
        for command in commands.values():
            timed(command, env)  # caches bytecode; creates the database
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(timed(command, env))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["sqlite-utils --help"]
    print(f"start-up, median of {args.runs} runs each, taking turns:")
    for name, median in medians.items():
        spread = f"{min(times[name]):.3f}-{max(times[name]):.3f}"
        print(f"  {name:<20} {median:6.3f} s  (runs {spread} s)")
    ratios = ", ".join(f"{name} {medians[name] / base:.2f}" for name in list(medians)[1:])
    print(f"  ratio to sqlite-utils --help: {ratios} (goal <= 1.3)")


if __name__ == "__main__":
    main()
