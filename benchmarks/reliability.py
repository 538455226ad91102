"""Reliability table: every bad input of ``reliability_cases.py`` through the real command.

Each case runs as its own ``python -m dreamlift`` process (what a user's shell sees: exit
code, stderr, no traceback); a case passes when it exits 2 with one ``error:`` line holding
its expected words and leaves no ``config.yaml``, checkpoint or summary in its ``--out``.
Prints the table, writes ``benchmarks/results/reliability.json`` and, with ``--markdown``,
the table of docs/reliability.md between its markers.

    python benchmarks/reliability.py --markdown docs/reliability.md
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from reliability_cases import CASES, Case, make_files
from run_info import command_line, machine, write_verdict

TRUSTED = ("config.yaml", "checkpoint.safetensors", "summary.json")
BEGIN, END = "<!-- reliability table: begin -->", "<!-- reliability table: end -->"


def run_case(case: Case, files: dict[str, Path], out: Path) -> dict[str, Any]:
    named = {**{k: str(v) for k, v in files.items()}, "out": str(out)}
    argv = [arg.format(**named) for arg in case.argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "10000"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dreamlift", *argv],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    left = [name for name in TRUSTED if (out / name).exists()]
    message = lines[-1] if lines else ""
    ok = (
        proc.returncode == 2
        and len(lines) == 1
        and message.startswith("error:")
        and "Traceback" not in proc.stderr
        and case.expect.lower() in message.lower()
        and not left
    )
    return {
        "name": case.name,
        "what": case.what,
        "exit_code": proc.returncode,
        "stderr_lines": len(lines),
        "message": message,
        "left_behind": left,
        "traceback": "Traceback" in proc.stderr,
        "pass": ok,
        "seconds": time.perf_counter() - t0,
    }


def markdown(rows: list[dict[str, Any]], root: Path) -> str:
    """The docs table; the fixture folder's path is shown as ``…``."""
    out = [
        "| case | bad input | exit | what the user reads (stderr, one line) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        message = r["message"].replace(str(root), "…").replace("|", "\\|")
        if len(message) > 220:
            message = message[:217] + "…"
        mark = "" if r["pass"] else " **(fails)**"
        out.append(f"| `{r['name']}` | {r['what']} | {r['exit_code']}{mark} | {message} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reliability.json"))
    parser.add_argument("--markdown", type=Path, help="A docs page to write the table into.")
    parser.add_argument("--only", nargs="*", default=None, help="Case names.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dreamlift-reliability-") as tmp:
        root = Path(tmp)
        files = make_files(root / "files")
        rows = []
        for i, case in enumerate(CASES):
            if args.only and case.name not in args.only:
                continue
            rows.append(run_case(case, files, root / f"out-{i}"))
            r = rows[-1]
            verdict = "ok  " if r["pass"] else "FAIL"
            print(f"{verdict} {r['name']:28s} exit {r['exit_code']}  {r['message'][:110]}")
        table = markdown(rows, root / "files")
    if args.markdown is not None:
        page = args.markdown.read_text()
        head, _, rest = page.partition(BEGIN)
        _, _, tail = rest.partition(END)
        args.markdown.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    result = {
        "command": command_line("reliability.py", argv),
        "machine": machine(1),
        "cases": len(rows),
        "passed": sum(r["pass"] for r in rows),
        "tracebacks": sum(r["traceback"] for r in rows),
        "rows": rows,
        "all_pass": all(r["pass"] for r in rows),
        "wall_s": time.perf_counter() - t0,
    }
    print(f"\n{result['passed']} / {result['cases']} cases pass")
    write_verdict(args.out, result)
    return result


if __name__ == "__main__":
    main()
