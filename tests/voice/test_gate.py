"""The compute gate: one model step at a time, urgent steps first, in arrival order."""

import threading
import time

import pytest

from appliance.voice.gate import ComputeGate, CpuWatch, proc_sample


def test_urgent_steps_overtake_queued_background_ones() -> None:
    gate = ComputeGate()
    order: list[str] = []
    running = 0
    most = 0
    lock = threading.Lock()

    def step(name: str, urgent: bool) -> None:
        nonlocal running, most
        with gate(urgent=urgent):
            with lock:
                running += 1
                most = max(most, running)
            order.append(name)
            time.sleep(0.05)
            with lock:
                running -= 1

    holder = threading.Thread(target=step, args=("first", False))
    holder.start()
    time.sleep(0.02)  # "first" holds the gate; the rest queue in this order
    threads = []
    for name, urgent in [("bg1", False), ("bg2", False), ("u1", True), ("u2", True)]:
        t = threading.Thread(target=step, args=(name, urgent))
        t.start()
        threads.append(t)
        time.sleep(0.005)
    for t in [holder, *threads]:
        t.join(5)
    assert order == ["first", "u1", "u2", "bg1", "bg2"]
    assert most == 1
    assert gate.waited_s > 0


def test_steps_share_the_cores_and_a_wide_step_is_not_starved() -> None:
    gate = ComputeGate(cores=2)
    log: list[tuple[str, str, float]] = []

    def step(name: str, threads: int, seconds: float) -> None:
        with gate(urgent=True, threads=threads):
            log.append(("in", name, time.monotonic()))
            time.sleep(seconds)
            log.append(("out", name, time.monotonic()))

    a = threading.Thread(target=step, args=("a1", 1, 0.15))
    a.start()
    time.sleep(0.02)
    wide = threading.Thread(target=step, args=("wide", 2, 0.05))
    wide.start()
    time.sleep(0.02)
    b = threading.Thread(target=step, args=("b1", 1, 0.05))  # would fit beside a1, but queues
    b.start()
    for t in (a, wide, b):
        t.join(5)
    events = [(kind, name) for kind, name, _ in log]
    assert events.index(("in", "wide")) > events.index(("out", "a1"))
    assert events.index(("in", "b1")) > events.index(("out", "wide"))
    # Two one-thread steps do run side by side on two cores.
    log.clear()
    pair = [threading.Thread(target=step, args=(n, 1, 0.1)) for n in ("x", "y")]
    for t in pair:
        t.start()
    for t in pair:
        t.join(5)
    assert [kind for kind, _, _ in log] == ["in", "in", "out", "out"]


def test_a_gate_needs_a_core() -> None:
    with pytest.raises(ValueError, match="at least one core"):
        ComputeGate(0)


def test_small_steps_narrow_to_one_thread_while_other_processes_are_busy() -> None:
    samples = iter([(0, 0, 0), (100, 200, 95), (280, 400, 100)])
    watch = CpuWatch(sample=lambda: next(samples), cores=2, start=False)
    gate = ComputeGate(2, watch=watch)
    # 200 jiffies over 2 cores = 100 per core; 100 busy of which 95 ours: 0.05 cores of others.
    assert watch.update() == pytest.approx(0.05)
    assert gate.width(2) == 2
    # Next: 180 busy, 5 ours: 1.75 cores of other work.
    assert watch.update() == pytest.approx(1.75)
    assert gate.width(2) == 1 and gate.narrowed == 1
    assert ComputeGate(1).width(4) == 1  # never wider than the cores


def test_the_proc_sample_reads_this_box() -> None:
    busy, total, own = proc_sample()
    assert 0 <= busy <= total and own >= 0
