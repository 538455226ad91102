"""utils/beside.py: work in a forked child beside the parent's, or in-process where a fork
is unsafe, with the same result either way."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dreamlift.utils.beside import Beside, fork_is_safe

FORKED = textwrap.dedent(
    """
    import os, torch
    from dreamlift.utils.beside import Beside, fork_is_safe

    assert fork_is_safe()
    torch.set_num_threads(2)
    parent, seen = os.getpid(), []

    def work(x):
        seen.append(x)  # a side effect: lost with the child
        return os.getpid(), torch.get_num_threads(), x * 2

    with Beside(work, 21) as done:
        inside = torch.get_num_threads()
    pid, threads, value = done.result()
    print(pid != parent, threads, value, inside, torch.get_num_threads(), seen)

    def fails_in_child(x):
        if os.getpid() != parent:
            raise RuntimeError("child only")
        return x + 1

    with Beside(fails_in_child, 1) as done:
        pass
    print(done.result())

    def always_fails():
        raise ValueError("bad input")

    with Beside(always_fails) as done:
        pass
    try:
        done.result()
    except ValueError as exc:
        print("raised", exc)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="forks only on Linux")
def test_a_forked_child_returns_its_result_while_the_parent_gives_it_a_thread() -> None:
    """Run as its own process: a test worker's threads make forking unsafe in-process."""
    out = subprocess.run(
        [sys.executable, "-c", FORKED], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split("\n")
    # child's pid, child's threads, result, parent's threads inside and after, side effects
    assert out[0] == "True 1 42 1 2 []"
    assert out[1] == "2"  # the child failed: the parent did the work itself
    assert out[2] == "raised bad input"  # an error surfaces in the parent as without a fork


SLOW_CHILD = textwrap.dedent(
    """
    import os, sys, time
    import dreamlift.utils.beside as beside

    parent = os.getpid()
    beside.CHILD_TIMEOUT_S = float(sys.argv[1])
    pid_file = sys.argv[2]

    def work():
        if os.getpid() != parent:
            with open(pid_file, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(60)
        return "done here"

    with beside.Beside(work) as done:
        time.sleep(float(sys.argv[3]))
    child = int(open(pid_file).read())
    try:
        os.kill(child, 0)
        print("child alive")
    except ProcessLookupError:
        print("child gone")
    print(done.result())
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="forks only on Linux")
def test_a_child_past_its_time_is_killed_and_the_work_done_here(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SLOW_CHILD, "0.5", str(tmp_path / "pid"), "0.5"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split("\n")
    assert out[:2] == ["child gone", "done here"]


@pytest.mark.skipif(sys.platform != "linux", reason="forks only on Linux")
def test_the_child_dies_with_its_parent(tmp_path) -> None:
    """A killed run must not leave a child holding its run folder's lock."""
    import os
    import signal
    import time

    psutil = pytest.importorskip("psutil")

    pid_file = tmp_path / "pid"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, "600", str(pid_file), "60"])
    try:
        deadline = time.time() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:  # gone, or dead and waiting to be reaped by whoever adopted it
                if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the child outlived its killed parent")
    finally:
        proc.kill()


def test_no_fork_with_another_thread_alive_or_when_turned_off(monkeypatch) -> None:
    import dreamlift.utils.beside as beside

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DREAMLIFT_NO_FORK", raising=False)
    monkeypatch.setattr(beside.threading, "active_count", lambda: 1)
    assert fork_is_safe()
    monkeypatch.setattr(beside.threading, "active_count", lambda: 2)
    assert not fork_is_safe()
    monkeypatch.setattr(beside.threading, "active_count", lambda: 1)
    monkeypatch.setenv("DREAMLIFT_NO_FORK", "1")
    assert not fork_is_safe()
    monkeypatch.delenv("DREAMLIFT_NO_FORK")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not fork_is_safe()


def test_in_process_the_work_runs_on_entering_the_block(monkeypatch) -> None:
    import dreamlift.utils.beside as beside

    monkeypatch.setattr(beside, "fork_is_safe", lambda: False)
    order: list[str] = []
    with Beside(lambda: order.append("work") or 7) as done:
        order.append("block")
    assert order == ["work", "block"] and done.result() == 7
