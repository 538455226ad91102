"""Ray batch: six prompts one after another in one process against one Ray task each on a
local two-worker Ray, with one worker SIGKILLed in the middle of its prompt.

Both sides run the same command line (``dreamlift generate --prompts FILE``, the given
preset), the sequential one with torch at ``--threads`` threads, the Ray one with one CPU
(and one thread) per task. The bar: Ray's wall time ≤ 0.6× the sequential one's, every
prompt finished, the killed one resumed from its checkpoint. Run it on a quiet machine.

    python benchmarks/ray_batch.py --preset quick
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from generate import CAPTIONS
from run_info import command_line, machine, write_verdict

from dreamlift.methods.generate.batch import slug

PROMPTS = tuple(CAPTIONS["single"])
"""The generate benchmark's six single objects."""
BAR = 0.6


def batch(prompts: Path, out: Path, preset: str, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "dreamlift", "generate", "--prompts", str(prompts)]
    cmd += ["--preset", preset, "--out", str(out), "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-1500:]}")
    return time.perf_counter() - t0


def kill_a_worker(out: Path, after_s: float, killed: list[int]) -> None:
    """SIGKILL the Ray worker of the first prompt ``after_s`` seconds after its checkpoint
    appears."""
    import psutil

    first = out / f"001-{slug(PROMPTS[0])}" / "checkpoint.safetensors"
    deadline = time.time() + 600
    while time.time() < deadline and not first.exists():
        time.sleep(0.05)
    time.sleep(after_s)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "ray::run_prompt" in cmdline:
            os.kill(proc.info["pid"], signal.SIGKILL)
            killed.append(proc.info["pid"])
            return


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--threads", type=int, default=2, help="The sequential run's threads.")
    parser.add_argument("--steps", type=int, default=None, help="Override the preset's steps.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ray_batch.json"))
    args = parser.parse_args(argv)
    extra = ["--no-score"] + (["--steps", str(args.steps)] if args.steps else [])
    with tempfile.TemporaryDirectory(prefix="dreamlift-ray-") as tmp:
        root = Path(tmp)
        prompts = root / "prompts.txt"
        prompts.write_text("\n".join(PROMPTS) + "\n")
        sequential = batch(
            prompts, root / "seq", args.preset, [*extra, "--threads", str(args.threads)]
        )
        print(f"sequential ({args.threads} threads): {sequential:.1f} s")
        killed: list[int] = []
        killer = threading.Thread(target=kill_a_worker, args=(root / "ray", 2.0, killed))
        killer.start()
        on_ray = batch(prompts, root / "ray", args.preset, [*extra, "--ray"])
        killer.join()
        rows = json.loads((root / "ray" / "batch.json").read_text())
        resumed = [
            json.loads((Path(r["out"]) / "summary.json").read_text()).get("resumed_from", 0)
            for r in rows
            if r["status"] == "ok"
        ]
    ratio = on_ray / sequential
    finished = sum(r["status"] == "ok" for r in rows)
    print(f"Ray (2 workers, one killed): {on_ray:.1f} s; ratio {ratio:.3f} (bar ≤ {BAR})")
    print(f"finished {finished}/{len(PROMPTS)}; resumed from steps {resumed}; killed {killed}")
    result = {
        "command": command_line("ray_batch.py", argv),
        "machine": machine(args.threads),
        "preset": args.preset,
        "prompts": list(PROMPTS),
        "sequential_s": sequential,
        "ray_s": on_ray,
        "ratio": ratio,
        "killed_workers": len(killed),
        "resumed_from": resumed,
        "finished": finished,
        "all_pass": ratio <= BAR and finished == len(PROMPTS) and bool(killed) and max(resumed) > 0,
        "wall_s": sequential + on_ray,
    }
    write_verdict(args.out, result)
    return result


if __name__ == "__main__":
    main()
