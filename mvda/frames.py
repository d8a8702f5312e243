"""The one frame loop of all four scripts: source -> step -> sinks.

::

    decode thread          main thread                     encode thread
    source items  --q-->  step(item) -> outputs  --q-->   sink.write(output) for every sink
                          step.flush() at the end          progress bar (outputs written, fps)

* **source**: any iterable (a generator over decoded frames, a pairing of depth and colour, ...). It is
  iterated on its own thread, a few items ahead (``queue_size``), so decoding overlaps compute.
* **step**: a callable ``item -> iterable of outputs`` (zero or more: a windowed network emits
  frames late) with an optional ``flush() -> iterable of outputs`` for what it still holds at the
  end. It runs on the calling (main) thread: networks and renderers that must stay on one thread stay
  there.
* **sinks**: objects with ``write(output)``, ``close()`` and ``abort()`` (:class:`Sink`). They run on
  the encode thread, so encoding overlaps compute too. :meth:`Sink.close` finalises an output (the
  atomic move into place), :meth:`Sink.abort` discards it.

Any exception, in any of the three threads, stops the other two, aborts every sink (their temporary
files are removed) and is re-raised on the calling thread. Ctrl-C raises KeyboardInterrupt there;
:func:`signals_raise` turns SIGTERM and SIGHUP into :class:`Interrupted` the same way, so all of them
leave nothing half-written behind. :func:`mvda.cli.run_cli` installs it and maps the exit codes
(130, 143, 129).
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mvda.cli import progress_bar

__all__ = ["Sink", "Step", "LoopResult", "Interrupted", "signals_raise", "run_frames", "FunctionSink", "Prefetch"]


class Interrupted(BaseException):
    """Raised on the main thread by SIGTERM / SIGHUP (see :func:`signals_raise`).

    A BaseException like KeyboardInterrupt, so that ``except Exception`` blocks do not swallow it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(signal.Signals(self.signum).name)


@contextlib.contextmanager
def signals_raise(signums: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise :class:`Interrupted` on the main thread.

    Does nothing off the main thread (Python delivers signals to the main thread only). The previous
    handlers are restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        for other in previous:  # one is enough: further signals must not interrupt the clean-up
            with contextlib.suppress(ValueError, OSError):
                signal.signal(other, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {}
    for signum in signums:
        with contextlib.suppress(ValueError, OSError):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, old)


class Sink(Protocol):
    """Where outputs go: an encoder, a file store, a PNG sequence, ..."""

    def write(self, output: Any) -> None: ...

    def close(self) -> Any: ...

    def abort(self) -> None: ...


class Step(Protocol):
    """The per-item work: ``step(item)`` returns the outputs ready so far (often exactly one)."""

    def __call__(self, item: Any) -> Iterable[Any]: ...


class FunctionSink:
    """Adapt a writer: ``write(output)`` calls ``target.write(select(output))``; close/abort forward.

    ``select`` picks (or converts) this writer's part of an output, e.g. ``lambda out: out[1]`` for the
    mask of a ``(frame, mask)`` pair. When ``select`` returns None nothing is written. ``time``, when
    given, picks the output's presentation time (seconds), passed on as ``write(value, time=...)``.
    """

    def __init__(self, target: Any, select: Callable[[Any], Any] | None = None,
                 time: Callable[[Any], float | None] | None = None) -> None:
        self.target = target
        self.select = select
        self.time = time

    def write(self, output: Any) -> None:
        value = output if self.select is None else self.select(output)
        if value is None:
            return
        if self.time is None:
            self.target.write(value)
        else:
            self.target.write(value, time=self.time(output))

    def close(self) -> Any:
        return self.target.close()

    def abort(self) -> None:
        self.target.abort()


@dataclass
class LoopResult:
    """What one :func:`run_frames` call did: items read, outputs written, wall time in seconds."""

    items: int
    outputs: int
    seconds: float
    closed: list

    @property
    def fps(self) -> float:
        return self.outputs / self.seconds if self.seconds > 0 else 0.0


_END = object()


@dataclass(frozen=True)
class _Failure:
    exc: BaseException


class Prefetch:
    """Iterate ``items`` on a background thread, keeping up to ``depth`` items ready.

    Exceptions raised by ``items`` are re-raised in the consuming thread. :meth:`close` stops and joins
    the thread (call it before closing what ``items`` reads from); it is also a context manager.
    """

    def __init__(self, items: Iterable, depth: int = 2, name: str = "mvda-decode", start: bool = True) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self.count = 0
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start the thread (when constructed with ``start=False``: assign first, then start, so that a
        signal arriving during the start still finds the object to :meth:`close`)."""
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterable) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))

    def __iter__(self) -> Iterator:
        while True:
            item = self._queue.get()
            if item is _END:
                self._put(_END)  # a second iteration ends at once too
                return
            if isinstance(item, _Failure):
                raise item.exc
            self.count += 1
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread.ident is None:  # never started
            return
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Encoder:
    """Write every output to every sink on a background thread (up to ``depth`` outputs queued).

    An exception in a sink is re-raised by the next :meth:`put` or by :meth:`finish`.
    """

    def __init__(self, sinks: Sequence[Sink], depth: int, on_written: Callable[[], None]) -> None:
        self._sinks = list(sinks)
        self._on_written = on_written
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="mvda-encode", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END or self._abort.is_set():
                return
            try:
                for sink in self._sinks:
                    sink.write(item)
            except BaseException as exc:
                self._error = exc
                return
            self.written += 1
            self._on_written()

    def put(self, item) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                if not self._thread.is_alive() and self._error is None:
                    raise RuntimeError("the encoder thread stopped unexpectedly") from None

    def finish(self) -> None:
        """Wait until everything queued is written (re-raises a sink's exception)."""
        self.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._abort.set()
        if self._thread.ident is None:  # never started
            return
        while self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(_END, timeout=0.05)
        self._thread.join()


class _RateAfterFirst:
    """Progress callback: count one output; after the first, restart the bar's clock at that count."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self.first = True

    def __call__(self) -> None:
        if self.first and not self.bar.disable:
            self.first = False
            # last_print_t too: tqdm's close() skips its final line and newline when the last print is
            # older than start_t (the next message would be glued to the bar).
            self.bar.start_t = self.bar.last_print_t = self.bar._time()
            self.bar.initial = self.bar.n + 1
        self.bar.update(1)


def run_frames(
    source: Iterable,
    step: Step | Callable[[Any], Iterable[Any]],
    sinks: Sequence[Sink],
    *,
    total: int | None = None,
    desc: str = "",
    progress: bool = True,
    unit: str = "frame",
    queue_size: int = 2,
    close_sinks: bool = True,
    bar_initial: int = 0,
    encode_queue_size: int | None = None,
) -> LoopResult:
    """Run ``source -> step -> sinks`` with decode, compute and encode on their own threads.

    Args:
        source: iterable of items (decoded on a background thread, ``queue_size`` ahead).
        step: ``item -> iterable of outputs``; its ``flush()``, if it has one, is called after the
            last item and its outputs written too.
        sinks: every output goes to each sink, in order, on the encode thread.
        total: expected number of outputs (progress bar), None if unknown.
        desc, unit, progress: the progress bar's label and unit; ``progress=False`` hides it.
        queue_size: items buffered between the threads (small: memory stays bounded).
        close_sinks: close (finalise) the sinks after the last output; False leaves that to the caller
            (e.g. a writer fed by a second pass). Sinks are aborted on failure either way.
        bar_initial: outputs already done before this call (a second pass continues the same bar).
        encode_queue_size: outputs buffered before the encode thread (default ``queue_size``); a step
            that emits bursts (a windowed network: a window's frames at once) keeps computing while
            the encoder works through a burst when this holds one.

    Returns:
        A :class:`LoopResult`; ``closed`` holds what each sink's ``close()`` returned.

    Raises:
        Whatever the source, step or a sink raised (KeyboardInterrupt and :class:`Interrupted`
        included), after every sink was aborted.
    """
    start = time.perf_counter()
    # Rate and ETA from the outputs after the first one: the first waits for warm-up or a whole
    # network window and would otherwise make the first estimate far too pessimistic.
    bar = progress_bar(total=total, desc=desc, unit=unit, disable=not progress, initial=bar_initial, smoothing=0)
    rate_from_here = _RateAfterFirst(bar)
    reader = encoder = None
    closed: list = []
    flush = getattr(step, "flush", None)
    try:
        with bar:
            # Assigned before their threads start: a signal that arrives while a thread starts (its
            # start waits for the thread) must still find the thread to stop before the caller closes
            # what the source reads from.
            reader = Prefetch(source, depth=queue_size, start=False)
            reader.start()
            encoder = _Encoder(sinks, depth=encode_queue_size or queue_size, on_written=rate_from_here)
            encoder.start()
            for item in reader:
                for output in step(item):
                    encoder.put(output)
            if flush is not None:
                for output in flush():
                    encoder.put(output)
            encoder.finish()
            reader.close()
        if close_sinks:
            for sink in sinks:
                closed.append(sink.close())
    except BaseException:
        if encoder is not None:
            encoder.abort()
        if reader is not None:
            reader.close()
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.abort()
        raise
    return LoopResult(items=reader.count, outputs=encoder.written, seconds=time.perf_counter() - start,
                      closed=closed)
