"""Progress when the output is not a terminal: plain lines every so many seconds, the last step always."""

from __future__ import annotations

import io

from tunery.training.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_piped_output_gets_a_line_every_interval_and_for_the_last_step():
    stream, clock = io.StringIO(), FakeClock()
    with Progress(10, stream=stream, every_seconds=10, clock=clock) as progress:
        for step in range(1, 11):
            clock.now = step * 4.0  # a step every 4 s: lines at steps 1, 4 (16 s), 7 (28 s), and the last
            progress.update(step, loss=1.0 / step, tokens_per_s=97.4)
    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["1/10", "4/10", "7/10", "10/10"]
    assert lines[1] == "train step 4/10  loss 0.2500  97 tok/s  elapsed 0:00:16  eta 0:00:24"
    assert lines[-1].endswith("eta 0:00:00")


def test_a_resumed_run_estimates_from_the_steps_it_ran_itself():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(100, start=50, stream=stream, every_seconds=10, clock=clock)
    clock.now = 20.0
    progress.update(60, loss=0.5, tokens_per_s=10)
    assert stream.getvalue().rstrip().endswith("elapsed 0:00:20  eta 0:01:20")


def test_quiet_prints_nothing():
    stream = io.StringIO()
    with Progress(3, enabled=False, stream=stream) as progress:
        progress.update(3, loss=0.1, tokens_per_s=1)
    assert stream.getvalue() == ""
