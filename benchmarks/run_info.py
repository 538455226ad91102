"""What a benchmark's results file says about its run: the command line and the machine.

Imported by the scripts beside it (``benchmarks/`` is on the path of a script run from it).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """``benchmarks/<script> <arguments>``: ``argv`` as given to ``main``, else the process's."""
    return f"benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv)


def machine(threads: int | None = None, **details: Any) -> dict[str, Any]:
    """The machine a run measured: CPU threads (when set), ``details`` (device, dtype, …),
    platform and torch version, in that order."""
    cpu = {} if threads is None else {"cpu_threads": threads}
    return {**cpu, **details, "platform": platform.platform(), "torch": torch.__version__}


def write_verdict(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON and print whether all its bars (``all_pass``) were met."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nall bars met: {result['all_pass']}  ({result['wall_s']:.0f} s) -> {path}")


def write_results(path: Path, **sections: Any) -> None:
    """Write a results file: today's date, the commit measured, then ``sections`` (bars,
    summary, the per-case records …) in the order given."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    result = {"date": time.strftime("%Y-%m-%d"), "commit": commit, **sections}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
