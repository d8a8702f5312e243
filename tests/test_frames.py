"""mvda.frames: the one frame loop (order, flush, threads, abort on any failure, progress, signals)."""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import pytest

from mvda.frames import FunctionSink, Interrupted, run_frames, signals_raise


class Recorder:
    """A sink that records what it gets, on which thread, and how it ended."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.items: list = []
        self.threads: set[str] = set()
        self.state = "open"
        self.fail_at = fail_at

    def write(self, item) -> None:
        if self.fail_at is not None and len(self.items) == self.fail_at:
            raise OSError(28, "No space left on device")
        self.threads.add(threading.current_thread().name)
        self.items.append(item)

    def close(self):
        self.state = "closed"
        return len(self.items)

    def abort(self) -> None:
        self.state = "aborted"


class Windowed:
    """A step that holds items back and emits them in bursts of 3 (like a windowed network), with flush."""

    def __init__(self) -> None:
        self.held: list = []
        self.thread = None

    def __call__(self, item):
        self.thread = threading.current_thread().name
        self.held.append(item * 10)
        if len(self.held) == 3:
            out, self.held = self.held, []
            return out
        return ()

    def flush(self):
        out, self.held = self.held, []
        return out


def test_outputs_in_order_with_flush_and_threads():
    a, b = Recorder(), Recorder()
    step = Windowed()
    result = run_frames(range(8), step, [a, b], total=8, progress=False)
    assert a.items == b.items == [i * 10 for i in range(8)]
    assert result.items == 8 and result.outputs == 8 and result.closed == [8, 8]
    assert a.state == b.state == "closed"
    assert step.thread == threading.main_thread().name  # compute stays on the calling thread
    assert a.threads == {"mvda-encode"}  # encoding on its own thread


def test_function_sink_selects_and_passes_times():
    got = []

    class Writer:
        def write(self, value, time=None):
            got.append((value, time))

        def close(self):
            return "done"

        def abort(self):
            pass

    sink = FunctionSink(Writer(), select=lambda out: out[0] or None, time=lambda out: out[1])
    run_frames([(1, 0.5), (0, 0.7), (2, 0.9)], lambda item: (item,), [sink], progress=False)
    assert got == [(1, 0.5), (2, 0.9)]  # None from select: nothing written


@pytest.mark.parametrize("where", ["source", "step", "sink"])
def test_any_failure_aborts_every_sink_and_is_re_raised(where):
    def source():
        for i in range(100):
            if where == "source" and i == 5:
                raise ValueError("bad frame")
            yield i

    def step(item):
        if where == "step" and item == 5:
            raise ValueError("bad frame")
        return (item,)

    sinks = [Recorder(fail_at=5 if where == "sink" else None), Recorder()]
    with pytest.raises((ValueError, OSError)):
        run_frames(source(), step, sinks, progress=False)
    assert [s.state for s in sinks] == ["aborted", "aborted"]
    assert not [t for t in threading.enumerate() if t.name in ("mvda-decode", "mvda-encode")]


def test_sigterm_raises_interrupted_and_aborts():
    sink = Recorder()

    def step(item):
        if item == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)  # the handler raises before this ends
        return (item,)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as exc, signals_raise():
        run_frames(range(10), step, [sink], progress=False)
    assert exc.value.exit_code == 143 and str(exc.value) == "SIGTERM"
    assert sink.state == "aborted"
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_rate_is_measured_after_the_first_output(monkeypatch):
    """The first output waits for warm-up (a whole network window): the rate must not include it."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)

    def step(item):
        if item == 0:
            time.sleep(0.6)
        return (item,)

    class Slow(Recorder):
        def write(self, item):
            time.sleep(0.01)
            super().write(item)

    run_frames(range(40), step, [Slow()], total=40, desc="t")
    assert stream.getvalue().endswith("\n")  # the bar's final line is printed and ended
    final = stream.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert "40/40" in final
    rate = float(final.split(",")[-1].split("frame/s")[0].strip())
    assert rate > 55  # about 1 / 0.01 s; with the first 0.6 s included it would be near 40 / 1.0 s


@pytest.mark.parametrize("fail", [False, True])
def test_bar_ends_its_line_done_or_failed(monkeypatch, fail):
    """Once the loop ends (finished or failed) the bar's line is ended, so the next message (the one
    error line, "terminated by SIGTERM") starts a line of its own and is not glued to the bar."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)

    def step(item):
        if fail and item == 3:
            raise ValueError("bad frame")
        return (item,)

    if fail:
        with pytest.raises(ValueError):
            run_frames(range(5), step, [Recorder()], total=5, desc="t")
    else:
        run_frames(range(5), step, [Recorder()], total=5, desc="t")
    assert stream.getvalue().endswith("\n"), repr(stream.getvalue())


@pytest.mark.parametrize("thread_name", ["mvda-decode", "mvda-encode"])
def test_signal_while_a_thread_starts_still_stops_it(monkeypatch, thread_name):
    """A signal can arrive while ``Thread.start`` waits for the new thread: the loop must still stop that
    thread before it re-raises, or the caller closes the source while the thread is inside it."""
    started = threading.Event()
    release = threading.Event()

    def source():
        for i in range(1000):
            release.wait(0.01)
            yield i

    real_start = threading.Thread.start

    def interrupted_start(self):
        real_start(self)
        if self.name == thread_name:
            started.set()
            raise Interrupted(signal.SIGTERM)  # as the handler raises in the main thread's wait

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    gen = source()
    with pytest.raises(Interrupted):
        run_frames(gen, lambda x: (x,), [Recorder()], progress=False)
    assert started.is_set()
    assert not [t for t in threading.enumerate() if t.name == thread_name]
    gen.close()  # "generator already executing" if the decode thread still runs it
