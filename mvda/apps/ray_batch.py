"""``video_metric_convert.py --ray``: a batch of videos converted by Ray actors on the GPUs (or the
cores) of one machine or of a Ray cluster.

Imported only when ``--ray`` is given; Ray itself is imported inside the functions, so the base install
never needs it.

* The driver (this process) expands the inputs, skips existing outputs (``--skip_existing``) and probes
  every input, so that a missing or unreadable file fails alone before any worker starts. Then it
  connects (:class:`RayConnection`): ``local`` starts a Ray runtime on this machine, ``auto`` joins the
  running cluster (``RAY_ADDRESS``, or one started with ``ray start`` here), anything else is the
  address of a cluster to join. A process that already has Ray initialised (a notebook, the tests)
  keeps its connection as it is.
* Workers (:class:`VideoWorker` actors, :func:`plan_workers`): one per GPU (``num_gpus=1``), or one per
  ``--ray_cpus_per_worker`` cores on a cluster without GPUs; never more than the videos to convert
  (or ``--ray_workers``). Each loads the networks once, on its own node, with the serial run's
  checkpoint resolution (:func:`mvda.apps.convert.load_models`: the given path, the local checkpoint
  folders, the Hugging Face cache / hub), and checks that it can create files in ``--output_dir``; a
  worker that cannot load or write refuses the whole job with one line before any video starts.
* Jobs (:class:`VideoJob`, one whole video each) go to the next idle worker, which runs
  :func:`mvda.apps.convert.convert_video`, the serial code path, writing straight into
  ``--output_dir`` through the usual hidden temporary file that is renamed when complete. So the files
  are the serial run's, byte for byte (same library versions and thread count; the outputs are
  written ``bitexact``). A video's error fails that video alone (its summary line; exit code 1 naming
  it); so does an unexpected error in a worker, or a worker that dies (then the worker is dropped).
* Long videos (with more than one worker) are split at their scene cuts: a plan job, then one job per
  piece, joined by the driver into the serial run's file (:mod:`mvda.apps.ray_split`; the summary line
  and the table count the video once, its seconds from the plan's start to the join).
* Ctrl-C, SIGTERM or SIGHUP (or an error of the driver) kill the workers, wait for them to end, remove
  the temporary files they may have left (named after their process ids: :func:`worker_temporaries`)
  and shut a local runtime down; nothing half-written is left.
* Progress: the workers count written frames into a :class:`ProgressCounter` actor that the driver
  polls for one overall bar (frames, frames/s, videos done); at the end a table of video, frames,
  seconds, node and worker (:func:`results_table`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from mvda.apps.convert import (VideoPiece, VideoPlan, VideoResult, convert_video, expected_output_frames,
                               fov_model_args, load_models, options_from_args, output_path_for, plan_video)
from mvda.apps.ray_split import (DEFAULT_SPLIT_SECONDS, PieceJob, PlanJob, SplitVideo, join_pieces, joined_result,
                                 piece_estimate, piece_part_path, plan_pieces, remove_files)
from mvda.cli import progress_bar
from mvda.errors import UserError
from mvda.io.video import (discard_temporaries, ensure_writable_dir, forget_temporary, probe_video,
                           register_temporary)

__all__ = [
    "VideoJob",
    "WorkerPlan",
    "WorkerInfo",
    "ProgressCounter",
    "VideoWorker",
    "RayConnection",
    "plan_workers",
    "check_output_dir",
    "worker_temporaries",
    "results_table",
    "convert_on_ray",
]

log = logging.getLogger("mvda")

#: Cores per worker on nodes without GPUs when --ray_cpus_per_worker is not given.
DEFAULT_CPUS_PER_WORKER = 4

#: Seconds between two progress polls of the driver, and at least between two reports of a worker.
POLL_SECONDS = 0.5
#: Seconds the driver waits for killed workers to end before it removes their temporary files.
KILL_WAIT_SECONDS = 15.0
#: Object store of a local runtime: only job descriptions and results travel through it.
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20

RAY_MISSING = ("--ray needs Ray, which is not installed: run `bash install_mvda.sh --ray` (or "
               "pip install -e '.[ray]')")


def import_ray() -> Any:
    """The ``ray`` module, or :class:`UserError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


# ---------------------------------------------------------------------------------------------------
# plans and small pure helpers


@dataclass(frozen=True)
class VideoJob:
    """One unit of work for a worker: the whole video ``input`` (an absolute path), the
    ``index``-th of the batch.

    A long video is split instead (:mod:`mvda.apps.ray_split`): a :class:`~mvda.apps.ray_split.PlanJob`,
    then a :class:`~mvda.apps.ray_split.PieceJob` per piece.
    """

    index: int
    input: str

    @property
    def key(self) -> tuple[int, int]:
        """The job's key in the progress counter (a piece's is ``(index, start)``)."""
        return (self.index, 0)


@dataclass(frozen=True)
class WorkerPlan:
    """``count`` worker actors, each reserving ``num_cpus`` cores and ``num_gpus`` GPUs."""

    count: int
    num_cpus: int
    num_gpus: int


def plan_workers(nodes: Sequence[Mapping[str, float]], device: str, cpus_per_worker: int, jobs: int,
                 limit: int | None = None) -> WorkerPlan:
    """Workers for ``jobs`` videos on a cluster whose alive nodes have the resources ``nodes`` (Ray's
    totals per node: ``"CPU"``, ``"GPU"``).

    With GPUs (and ``device`` other than ``"cpu"``): one worker per GPU, each with one core for its
    decode/encode threads. Without: one worker per ``cpus_per_worker`` cores of each node (at most the
    largest node's cores, so that one worker always fits). At most ``jobs`` workers (a worker loads
    the networks once, which is wasted without a video for it) and at most ``limit`` if given.

    Raises:
        UserError: the cluster offers no core at all.

    >>> plan_workers([{"CPU": 16, "GPU": 2}, {"CPU": 8, "GPU": 1}], "auto", 4, 10)
    WorkerPlan(count=3, num_cpus=1, num_gpus=1)
    >>> plan_workers([{"CPU": 16, "GPU": 2}], "cpu", 4, 10)
    WorkerPlan(count=4, num_cpus=4, num_gpus=0)
    >>> plan_workers([{"CPU": 2}], "auto", 4, 10)
    WorkerPlan(count=1, num_cpus=2, num_gpus=0)
    """
    gpus = 0 if device == "cpu" else sum(int(node.get("GPU", 0)) for node in nodes)
    if gpus:
        plan = WorkerPlan(count=gpus, num_cpus=1, num_gpus=1)
    else:
        largest = int(max((node.get("CPU", 0) for node in nodes), default=0))
        if largest < 1:
            raise UserError("the Ray cluster offers no CPU to run workers on; add nodes with `ray start --address`")
        per = max(1, min(int(cpus_per_worker), largest))
        plan = WorkerPlan(count=sum(int(node.get("CPU", 0)) // per for node in nodes), num_cpus=per, num_gpus=0)
    count = min(plan.count, max(1, jobs), limit if limit else plan.count)
    return dataclasses.replace(plan, count=max(1, count))


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """Create ``output_dir`` if needed and create (and remove) a hidden file in it: a worker's proof
    that it can write its outputs there (permissions alone say little on network storage).

    Raises:
        UserError: the folder cannot be created or written.
    """
    folder = ensure_writable_dir(output_dir)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mvda-write-check-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot create files in {folder}: {exc.strerror or exc}") from None


def worker_temporaries(output: Path, pid: int) -> list[Path]:
    """The hidden temporary files that process ``pid`` may have left while writing ``output``: the
    writer's ``.NAME.partial-PID-RANDOM.mkv`` (:func:`mvda.io.video.atomic_output_path`; also its copy
    ``....RANDOM.cuts.mkv`` when a long cut list is remuxed in, and that copy's own partial), the global
    fit's store ``.NAME.vda-PID.f16`` (:mod:`mvda.apps.convert`), and a split video's pieces
    ``.NAME.piece-PID-START.mkv`` (:func:`mvda.apps.ray_split.piece_part_path`). A worker killed mid-video
    cannot remove them itself, so the driver does; it also removes the finished pieces of a video that
    failed or was interrupted."""
    output = Path(output)
    stem = glob.escape(output.stem)
    patterns = [f".{stem}.partial-{pid}-*{glob.escape(output.suffix)}", f".{stem}.vda-{pid}.f16",
                f"..{stem}.partial-{pid}-*.cuts.partial-{pid}-*{glob.escape(output.suffix)}",
                # a split video's pieces, and their partials
                f".{stem}.piece-{pid}-*.mkv", f"..{stem}.piece-{pid}-*.partial-{pid}-*.mkv"]
    return sorted(Path(p) for pattern in patterns for p in glob.glob(str(output.parent / pattern)))


def results_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a plain text table: ``rows[0]`` is the header; text columns left-aligned, the others
    (numbers, ``-``) right-aligned.

    >>> results_table([("video", "frames"), ("a.mp4", "24"), ("long_name.mkv", "120")])
    ['video          frames', 'a.mp4              24', 'long_name.mkv     120']
    """
    widths = [max(len(str(row[c])) for row in rows) for c in range(len(rows[0]))]

    def numeric(c: int) -> bool:
        return all(str(row[c]).replace(".", "", 1).isdigit() or row[c] == "-" for row in rows[1:])

    right = [numeric(c) for c in range(len(widths))]
    return ["  ".join(str(v).rjust(w) if r else str(v).ljust(w) for v, w, r in zip(row, widths, right)).rstrip()
            for row in rows]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------------------------------------------
# the actors (turned into Ray actors with ray.remote when a batch starts)


@dataclass(frozen=True)
class WorkerInfo:
    """A started worker: its node's address, process id, a label (``gpu 0``, ``4 cpu``) and the one
    line that refuses the job (``error``), if any."""

    node: str
    pid: int
    label: str
    error: str | None = None


class ProgressCounter:
    """Ray actor: frames written per job (its ``key``), added by the workers, read by the driver; and
    the videos the driver gave up (a piece failed), which :meth:`add` answers, so that the worker
    converting another piece of such a video stops."""

    def __init__(self) -> None:
        self.frames: dict[tuple[int, int], int] = {}
        self.cancelled: set[int] = set()

    def add(self, key: tuple[int, int], frames: int) -> bool:
        """Count ``frames`` more of job ``key``; True when its video was cancelled."""
        self.frames[key] = self.frames.get(key, 0) + int(frames)
        return key[0] in self.cancelled

    def cancel(self, index: int) -> None:
        self.cancelled.add(int(index))

    def snapshot(self) -> dict[tuple[int, int], int]:
        return dict(self.frames)


class VideoWorker:
    """Ray actor: loads the networks once (:meth:`setup`), then converts one :class:`VideoJob` (or a
    piece, :class:`~mvda.apps.ray_split.PieceJob`) per :meth:`convert` call with
    :func:`mvda.apps.convert.convert_video`, reporting its written frames to ``counter`` (a
    :class:`ProgressCounter` actor) at most every :data:`POLL_SECONDS`; :meth:`plan` plans a split.

    ``args`` are the parsed command line (checkpoint paths absolute); ``threads``: torch's CPU threads
    (the worker's cores) when ``gpu`` is False; a GPU worker uses the GPU Ray gave it.
    """

    def __init__(self, args: argparse.Namespace, output_dir: str, counter: Any, threads: int, gpu: bool) -> None:
        self.args = argparse.Namespace(**vars(args))
        self.output_dir = output_dir
        self.counter = counter
        self.threads = max(1, int(threads))
        self.gpu = bool(gpu)
        self.models: Any = None
        self.options: Any = None
        self._lock = threading.Lock()
        self._job: tuple[int, int] | None = None
        self._unsent = 0
        self._sent_at = 0.0
        self._reply: Any = None  # the last report's answer: is this job's video cancelled?
        self._cancelled = False

    def setup(self) -> WorkerInfo:
        """Check ``output_dir`` and load the networks; the returned info carries the error line if not."""
        import ray
        import torch
        from depth_anything_v2.checkpoint import CheckpointError

        node = ray.util.get_node_ip_address()
        label = f"gpu {','.join(str(g) for g in ray.get_gpu_ids())}" if self.gpu else f"{self.threads} cpu"
        log.setLevel(logging.ERROR)  # the driver has already warned about the flags
        if not self.gpu:
            torch.set_num_threads(self.threads)
        try:
            check_output_dir(self.output_dir)
        except UserError as exc:
            return WorkerInfo(node, os.getpid(), label, error=(
                f"--output_dir is not writable from node {node} ({_one_line(exc)}); with --ray it must be a folder "
                "that every worker node mounts at the same path (shared storage)"))
        args = self.args
        if self.gpu and args.device != "cpu":
            args.device = "cuda"  # the one GPU Ray made visible to this worker
        try:
            options = options_from_args(args)
            self.options = dataclasses.replace(options, progress=False, on_frame=self._frame_written)
            self.models = load_models(args.model, args.encoder, args.metric_encoder, args.metric_model,
                                      options.device, vda_checkpoint=args.vda_checkpoint,
                                      metric_checkpoint=args.metric_checkpoint, **fov_model_args(args, options))
        except (UserError, CheckpointError) as exc:
            return WorkerInfo(node, os.getpid(), label, error=f"worker on node {node}: {_one_line(exc)}")
        return WorkerInfo(node, os.getpid(), label)

    def convert(self, job: VideoJob | PieceJob) -> VideoResult:
        """Convert one video, or one piece of one into its hidden part file (left for the driver to
        join); a :class:`UserError` becomes a failed result (anything else raises, after this process's
        temporary files were removed)."""
        with self._lock:
            self._job, self._unsent, self._sent_at = job.key, 0, time.monotonic()
            self._reply, self._cancelled = None, False
        path = Path(job.input)
        output = output_path_for(path, Path(self.output_dir))
        piece = None
        if isinstance(job, PieceJob):
            part = register_temporary(piece_part_path(output, job.start, os.getpid()))
            piece = VideoPiece(job.start, job.end, job.cuts, job.fov, part, job.anchor)
        try:
            result = convert_video(path, self.output_dir, self.models, self.options, piece=piece)
            if piece is not None:
                forget_temporary(piece.part)  # the driver joins it with the other pieces, or removes it
            return result
        except UserError as exc:
            if piece is not None:
                remove_files([piece.part])
                forget_temporary(piece.part)
            return VideoResult(input=path, output=output, status="failed", error=_one_line(exc))
        except BaseException:
            discard_temporaries()
            raise
        finally:
            self._report(force=True)
            with self._lock:
                self._job = None

    def plan(self, job: PlanJob) -> VideoPlan | VideoResult:
        """The cuts, length and field of view of a video to split (:func:`mvda.apps.convert.plan_video`);
        its :class:`UserError` becomes a failed result."""
        path = Path(job.input)
        try:
            return plan_video(path, self.models, self.options)
        except UserError as exc:
            return VideoResult(input=path, output=output_path_for(path, Path(self.output_dir)), status="failed",
                               error=_one_line(exc))

    def _frame_written(self) -> None:
        """ConvertOptions.on_frame: count a frame (the encode thread); stop a piece whose video the
        driver gave up (the error ends the conversion, which removes its temporary files)."""
        with self._lock:
            self._unsent += 1
            cancelled = self._cancelled
        if cancelled:
            raise UserError("stopped: another piece of this video failed")
        self._report()

    def _report(self, force: bool = False) -> None:
        import ray

        now = time.monotonic()
        with self._lock:
            if self._job is None or not self._unsent or (not force and now - self._sent_at < POLL_SECONDS):
                return
            key, frames, self._unsent, self._sent_at = self._job, self._unsent, 0, now
            previous, self._reply = self._reply, self.counter.add.remote(key, frames)
        if previous is not None and ray.wait([previous], timeout=0)[0] and ray.get(previous):
            with self._lock:
                self._cancelled = True


# ---------------------------------------------------------------------------------------------------
# the connection


def _short_temp_root() -> str | None:
    """Where a local runtime keeps its session: under /tmp, as Ray's socket paths must stay short."""
    return "/tmp" if os.path.isdir("/tmp") else None


#: The signals that stop a batch.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signal_handlers_kept(ray: Any) -> Iterator[None]:
    """Keep this process's SIGINT/SIGTERM/SIGHUP handlers through ``ray.init``.

    ``ray.init`` first installs a SIGTERM handler that calls ``sys.exit``: a SIGTERM while it starts a
    local runtime would leave that runtime's processes running, and afterwards the handler would bypass
    the script's clean-up. Ray installs it through ``ray._private.utils.set_sigterm_handler``, which is
    made a no-op for the block where it exists (else the handlers are restored afterwards).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    original = getattr(utils, "set_sigterm_handler", None)
    if original is not None:
        utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        if original is not None:
            utils.set_sigterm_handler = original
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


@contextlib.contextmanager
def _stop_signals_handled(handler: Any) -> Iterator[None]:
    """``handler`` (a function or ``signal.SIG_IGN``) for :data:`_STOP_SIGNALS` during the block, the
    previous handlers restored after it; nothing changes off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, handler) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in saved.items():
            if old is not None:
                signal.signal(signum, old)


def _signals_deferred(received: list[int]) -> contextlib.AbstractContextManager[None]:
    """SIGINT/SIGTERM/SIGHUP only recorded in ``received`` during the block; the driver acts on them
    between Ray calls (:meth:`_Batch.check_signals`): an exception raised by a handler while Ray's
    ``wait``/``get`` run inside its C++ core comes out as a SystemError."""
    return _stop_signals_handled(lambda signum, _frame: received.append(signum))


def _signals_ignored() -> contextlib.AbstractContextManager[None]:
    """SIGINT/SIGTERM/SIGHUP ignored during the block (a second Ctrl-C must not cut the clean-up short)."""
    return _stop_signals_handled(signal.SIG_IGN)


@contextlib.contextmanager
def _workers_import_this_tree() -> Iterator[None]:
    """PYTHONPATH with the folders this process imports the project from, while a local runtime
    starts: its workers then import the same code (not another checkout installed in the
    environment)."""
    import depth_anything_v2
    import depth_codec
    import mvda
    import video_depth_anything

    roots = [str(Path(m.__file__).resolve().parents[1]) for m in (mvda, depth_anything_v2, video_depth_anything)]
    roots.append(str(Path(depth_codec.__file__).resolve().parent))
    before = os.environ.get("PYTHONPATH")
    entries = list(dict.fromkeys(roots + ([before] if before else [])))
    os.environ["PYTHONPATH"] = os.pathsep.join(entries)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


#: Seconds to wait for a cluster's address to accept a connection before ray.init (which, given an
#: address nobody answers at, retries for ever without reacting to signals).
CONNECT_CHECK_SECONDS = 5.0


def _check_reachable(address: str, flag: str) -> None:
    """Raise :class:`UserError` unless ``address`` (``host:port`` or ``ray://host:port``) accepts a TCP
    connection within :data:`CONNECT_CHECK_SECONDS`; other forms are left to Ray."""
    import socket

    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_CHECK_SECONDS):
            pass
    except OSError as exc:
        raise UserError(f"{flag}: no Ray cluster answers at {address} ({exc.strerror or exc}); check the address "
                        "(`ray start --head` prints it) and that its port is open from here") from None


class RayConnection:
    """Ray for one batch: a local runtime started here (``mode="local"``), a cluster joined
    (``"auto"`` or an address), or, when this process already has Ray initialised, that connection
    (left as it is by :meth:`close`).

    ``num_cpus``: cores a local runtime offers (None: all). ``verbose``: Ray's own log lines and the
    workers' output are shown (else only errors).
    """

    def __init__(self, mode: str, num_cpus: int | None = None, verbose: bool = False) -> None:
        self.ray = import_ray()
        self.mode = mode
        self.owned = not self.ray.is_initialized()
        self.local = self.owned and mode == "local"
        self.temp_dir: str | None = None
        if not self.owned:
            log.info("--ray: using this process's Ray connection")
            return
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=verbose,
                                      logging_level=logging.INFO if verbose else logging.ERROR)
        if self.local:
            self.temp_dir = tempfile.mkdtemp(prefix="mvda-ray-", dir=_short_temp_root())
            kwargs.update(address="local", num_cpus=num_cpus or os.cpu_count() or 1, _temp_dir=self.temp_dir,
                          object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        else:
            target = os.environ.get("RAY_ADDRESS", "") if mode == "auto" else mode
            if target and target not in ("auto", "local"):
                _check_reachable(target, f"--ray {mode}" + (f" (RAY_ADDRESS={target})" if mode == "auto" else ""))
            kwargs.update(address=mode)
        try:
            import_path = _workers_import_this_tree() if self.local else contextlib.nullcontext()
            with _signal_handlers_kept(self.ray), import_path:
                self.ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            self.close()
            # Ray >= 2.59 starts clusters with token authentication; a driver joining one must say so.
            auth = "" if self.local or os.environ.get("RAY_AUTH_MODE") else (
                "; if the cluster uses token authentication, set RAY_AUTH_MODE=token here (the token: "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token, see `ray get-auth-token`)")
            if mode == "auto":
                raise UserError("--ray auto: no running Ray cluster found (start one with `ray start --head`, set "
                                f"RAY_ADDRESS, or use --ray local): {_one_line(exc)}{auth}") from None
            raise UserError(f"--ray {mode}: cannot start or join Ray: {_one_line(exc)}{auth}") from None
        except BaseException:
            self.close()
            raise

    def nodes(self) -> list[dict[str, float]]:
        """The resources of the cluster's alive nodes."""
        return [dict(node.get("Resources", {})) for node in self.ray.nodes() if node.get("Alive")]

    def close(self) -> None:
        """Disconnect (a local runtime is shut down and its session folder removed)."""
        if self.owned:
            self.ray.shutdown()
            if self.temp_dir is not None:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
                self.temp_dir = None


# ---------------------------------------------------------------------------------------------------
# the batch


class _Batch:
    """The driver's side of one batch on a :class:`RayConnection`: start the workers, hand out jobs,
    feed the bar, and on every exit kill what it started and remove what the workers left."""

    def __init__(self, connection: RayConnection, args: argparse.Namespace, output_dir: Path,
                 jobs: Sequence[VideoJob], expected: Mapping[int, int | None], progress: bool,
                 signals: list[int] | None = None, pieces: Mapping[int, int] | None = None,
                 split_seconds: float = 0.0) -> None:
        self.ray = connection.ray
        self.connection = connection
        self.args = args
        self.output_dir = output_dir
        self.jobs = list(jobs)
        self.expected = dict(expected)
        self.progress = progress
        self.actors: list[Any] = []
        self.infos: dict[int, WorkerInfo] = {}  # actor index -> its info
        self.inflight: dict[Any, tuple[int, Any]] = {}  # task ref -> (actor index, job)
        #: Videos that may be split (--ray_split_seconds): index -> at most how many pieces.
        self.pieces = dict(pieces or {})
        self.split_seconds = float(split_seconds)
        self.counter: Any = None
        self.signals = signals if signals is not None else []  # received meanwhile (see _signals_deferred)

    def check_signals(self) -> None:
        """Raise what a signal received meanwhile stands for: KeyboardInterrupt (SIGINT) or
        :class:`mvda.frames.Interrupted` (SIGTERM, SIGHUP)."""
        if self.signals:
            from mvda.frames import Interrupted

            signum = self.signals[0]
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise Interrupted(signum)

    # -- start ------------------------------------------------------------------------------------
    def _worker_args(self) -> argparse.Namespace:
        args = argparse.Namespace(**vars(self.args))
        for name in ("vda_checkpoint", "metric_checkpoint", "fov_checkpoint"):  # relative to the driver's folder
            if getattr(args, name, None):
                setattr(args, name, os.path.abspath(getattr(args, name)))
        return args

    def start(self) -> None:
        ray = self.ray
        cpus_per_worker = self.args.ray_cpus_per_worker or DEFAULT_CPUS_PER_WORKER
        plan = plan_workers(self.connection.nodes(), str(self.args.device), cpus_per_worker,
                            sum(self.pieces.get(j.index, 1) for j in self.jobs), self.args.ray_workers)
        log.info("--ray: %d worker(s), %d cpu and %d gpu each", plan.count, plan.num_cpus, plan.num_gpus)
        self.counter = ray.remote(ProgressCounter).options(num_cpus=0).remote()
        actor = ray.remote(VideoWorker).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_restarts=0)
        args = self._worker_args()
        self.actors = [actor.remote(args, str(self.output_dir), self.counter, plan.num_cpus, plan.num_gpus > 0)
                       for _ in range(plan.count)]
        pending = {a.setup.remote(): k for k, a in enumerate(self.actors)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            self.check_signals()
            for ref in done:
                k = pending.pop(ref)
                try:
                    info = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise UserError(f"a Ray worker failed to start: {_one_line(exc)}") from None
                self.infos[k] = info
                if info.error:
                    raise UserError(info.error)

    # -- run ----------------------------------------------------------------------------------------
    def run(self, finished: Callable[[Any, VideoResult, WorkerInfo | None], None]) -> None:
        """Convert every job; ``finished(job, result, worker)`` is called as each video ends (in the
        order they end; for a split video with its plan job and a worker summing up its pieces')."""
        ray = self.ray
        split = len(self.actors) > 1 and self.split_seconds > 0
        plans = [PlanJob(j.index, j.input) for j in self.jobs if split and self.pieces.get(j.index, 1) > 1]
        planned = {j.index for j in plans}
        pending: deque[Any] = deque([*plans, *(j for j in self.jobs if j.index not in planned)])
        idle = deque(sorted(self.infos))
        self.splits: dict[int, SplitVideo] = {}
        live: dict[tuple[int, int], int] = {}  # frames written by the jobs of unfinished videos
        final: dict[int, int] = {}  # frames of finished videos
        known = all(self.expected.get(j.index) is not None for j in self.jobs)
        total = sum(self.expected[j.index] or 0 for j in self.jobs) if known else None
        bar = progress_bar(total=total, desc=f"0/{len(self.jobs)} videos", unit="frame", disable=not self.progress,
                           smoothing=0)
        with bar:
            while pending or self.inflight:
                while pending and idle:
                    k = idle.popleft()
                    job = pending.popleft()
                    if isinstance(job, PlanJob):
                        self.splits[job.index] = SplitVideo(job, time.monotonic())
                        ref = self.actors[k].plan.remote(job)
                    else:
                        ref = self.actors[k].convert.remote(job)
                    self.inflight[ref] = (k, job)
                ended: list[tuple[Any, VideoResult, WorkerInfo | None]] = []
                if not self.inflight:  # every worker died: the remaining videos fail
                    while pending:
                        job = pending.popleft()
                        ended += self._ended(job, self._failed(job, "no Ray worker left (they all died)"), None,
                                             pending, live)
                else:
                    done, _ = ray.wait(list(self.inflight), num_returns=1, timeout=POLL_SECONDS)
                    self.check_signals()
                    for ref in done:
                        k, job = self.inflight.pop(ref)
                        info = self.infos[k]
                        try:
                            value = ray.get(ref)
                            idle.append(k)
                        except ray.exceptions.RayActorError as exc:  # the worker is gone: drop it
                            self._remove_temporaries([job], [info.pid])
                            value = self._failed(job, f"the worker on {info.node} died ({_one_line(exc)})")
                        except ray.exceptions.RayTaskError as exc:  # an unexpected error in convert_video
                            cause = getattr(exc, "cause", None) or exc
                            value = self._failed(job, f"{type(cause).__name__}: {_one_line(cause)}")
                            idle.append(k)
                        if isinstance(value, VideoPlan) and bar.total is not None:  # the exact length
                            bar.total += value.frames - (self.expected.get(job.index) or 0)
                        ended += self._ended(job, value, info, pending, live)
                running = {job.key for _, job in self.inflight.values()
                           if not isinstance(job, PlanJob) and job.index not in final}
                if running:
                    snapshot = ray.get(self.counter.snapshot.remote())
                    self.check_signals()
                    for key in running:
                        live[key] = max(live.get(key, 0), snapshot.get(key, 0))
                for job, result, _ in ended:
                    final[job.index] = result.frames if result.status == "ok" else 0
                    for key in [key for key in live if key[0] == job.index]:
                        del live[key]
                    if bar.total is not None:  # a failed or shorter video: the bar still ends at 100 %
                        bar.total -= (self.expected.get(job.index) or 0) - final[job.index]
                bar.set_description(f"{len(final)}/{len(self.jobs)} videos", refresh=False)
                bar.update(sum(final.values()) + sum(live.values()) - bar.n)
                for job, result, info in ended:
                    with bar.external_write_mode():
                        finished(job, result, info)

    def _ended(self, job: Any, value: Any, info: WorkerInfo | None, pending: deque[Any],
               live: dict[tuple[int, int], int]) -> list[tuple[Any, VideoResult, WorkerInfo | None]]:
        """Take the outcome ``value`` of ``job`` (which ran on ``info``); returns the videos that ended
        with it: ``(job, result, worker)``. A plan queues its video's pieces (first in ``pending``), or
        the whole video when it gives one piece; the last piece of a video joins them; a failed piece
        fails its video (:meth:`_fail_split`)."""
        if isinstance(job, VideoJob):
            return [(job, value, info)]
        video = self.splits.setdefault(job.index, SplitVideo(job, time.monotonic()))  # (a plan never sent)
        if isinstance(job, PlanJob):
            if not isinstance(value, VideoPlan):  # failed
                video.failed = True
                return [(job, value, info)]
            self.expected[job.index] = value.frames
            ranges = plan_pieces(value.cuts, value.frames, float(value.fps), self.split_seconds)
            if len(ranges) < 2:  # not worth it after all: the whole video, as usual
                del self.splits[job.index]
                pending.appendleft(VideoJob(job.index, job.input))
                return []
            video.plan = value
            anchors = {cut: (source, at) for cut, source, at in value.anchors}
            video.pieces = [PieceJob(job.index, job.input, a, b, value.cuts, value.fov, anchors.get(a))
                             for a, b in ranges]
            pending.extendleft(reversed(video.pieces))
            log.info("--ray: %s split into %d pieces at frames %s", Path(job.input).name, len(ranges),
                     ", ".join(str(a) for a, _ in ranges[1:]))
            return []
        part = piece_part_path(output_path_for(Path(job.input), self.output_dir), job.start, info.pid) if info else None
        if video.failed:  # a piece of a video that already failed: only clean up
            if part is not None:
                remove_files([part])
            log.info("--ray: %s: frames %d-%d %s", Path(job.input).name, job.start, job.end - 1,
                     "stopped" if value.status == "failed" else "discarded")
            return []
        if value.status != "ok" or part is None:
            return [(video.job, self._fail_split(video, pending, f"frames {job.start}-{job.end - 1}: {value.error}"),
                     info)]
        video.done[job.start] = (value, info.node, info.label, part)  # type: ignore[union-attr]
        live[job.key] = value.frames
        if not video.complete:
            return []
        output = output_path_for(Path(job.input), self.output_dir)
        try:
            join_pieces(video.parts(), output, video.plan)  # type: ignore[arg-type]
        except UserError as exc:
            return [(video.job, self._fail_split(video, pending, _one_line(exc)), info)]
        finally:
            remove_files(video.parts())
        results = [video.done[start][0] for start in sorted(video.done)]
        result = joined_result(results, output, video.plan.cuts, time.monotonic() - video.started)  # type: ignore[union-attr]
        nodes = sorted({node for _, node, _, _ in video.done.values()})
        labels = sorted({label for _, _, label, _ in video.done.values()})
        where = WorkerInfo(",".join(nodes), 0, f"{len(video.pieces)} pieces on " + ",".join(labels))
        return [(video.job, result, where)]

    def _fail_split(self, video: SplitVideo, pending: deque[Any], error: str) -> VideoResult:
        """A piece of ``video`` failed: drop its pieces not started, remove the finished ones (those
        running are removed when they end); returns the video's failed result."""
        video.failed = True
        self.counter.cancel.remote(video.job.index)  # its pieces still running stop at their next report
        for job in [j for j in pending if isinstance(j, PieceJob) and j.index == video.job.index]:
            pending.remove(job)
        remove_files(video.parts())
        return self._failed(video.job, error)

    def _failed(self, job: Any, error: str) -> VideoResult:
        path = Path(job.input)
        return VideoResult(input=path, output=output_path_for(path, self.output_dir), status="failed", error=error)

    # -- stop -----------------------------------------------------------------------------------------
    def _remove_temporaries(self, jobs: Sequence[Any], pids: Sequence[int]) -> None:
        for job in jobs:
            output = output_path_for(Path(job.input), self.output_dir)
            for pid in pids:
                for path in worker_temporaries(output, pid):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

    def stop(self) -> None:
        """Kill the actors, wait (a while) until their running jobs end, disconnect (a local runtime
        is shut down), then remove the temporary files the workers may have left."""
        ray = self.ray
        with _signals_ignored():
            for actor in [*self.actors, self.counter]:
                if actor is not None:
                    with contextlib.suppress(Exception):
                        ray.kill(actor, no_restart=True)
            refs = list(self.inflight)
            if refs:
                with contextlib.suppress(Exception):
                    ray.wait(refs, num_returns=len(refs), timeout=KILL_WAIT_SECONDS)
            self.connection.close()
            self._remove_temporaries(self.jobs, [info.pid for info in self.infos.values()])


def convert_on_ray(inputs: Sequence[Path], args: argparse.Namespace, options: Any,
                   report: Callable[[str], None]) -> list[VideoResult]:
    """:func:`mvda.apps.convert.convert_batch` on Ray: the same results, summary lines (``report``,
    as each video ends) and errors, then a table of where each video ran.

    ``args``: the parsed command line (``ray``, ``ray_cpus``, ``ray_cpus_per_worker``, ``ray_workers``,
    ``ray_split_seconds`` with the converter's flags); ``options``: the driver's resolved ConvertOptions (progress, max_len,
    target_fps; each worker resolves its own device).

    Raises:
        UserError: Ray missing or unreachable, a worker that cannot write ``--output_dir`` or load the
            networks, and (a single input) the video's own error.
    """
    import_ray()
    out_dir = ensure_writable_dir(args.output_dir)
    many = len(inputs) > 1
    results: dict[int, VideoResult] = {}
    where: dict[int, WorkerInfo] = {}
    jobs: list[VideoJob] = []
    expected: dict[int, int | None] = {}
    pieces: dict[int, int] = {}  # videos that may be split: at most how many pieces
    target = Fraction(str(options.target_fps)) if options.target_fps and options.target_fps > 0 else None
    split_seconds = getattr(args, "ray_split_seconds", None)
    split_seconds = DEFAULT_SPLIT_SECONDS if split_seconds is None else float(split_seconds)
    if options.scene_cuts == "off" or options.resume or options.report:
        split_seconds = 0.0  # a video is split at its cuts; --resume and --report need the whole video
    for k, path in enumerate(inputs):
        output = output_path_for(path, out_dir)
        if args.skip_existing and output.exists():
            results[k] = VideoResult(input=Path(path), output=output, status="skipped")
        else:
            try:
                info = probe_video(path)
            except UserError as exc:
                if not many:
                    raise
                results[k] = VideoResult(input=Path(path), output=output, status="failed", error=_one_line(exc))
            else:
                jobs.append(VideoJob(k, os.path.abspath(path)))
                expected[k] = expected_output_frames(info.num_frames, info.fps, target, options.max_len)
                pieces[k] = piece_estimate(expected[k], float(target or info.fps), split_seconds)
                continue
        report(results[k].summary_line())

    def finished(job: Any, result: VideoResult, worker: WorkerInfo | None) -> None:
        path = inputs[job.index]  # as given, like the serial run's lines
        result = dataclasses.replace(result, input=Path(path), output=output_path_for(path, out_dir))
        if not many and result.status == "failed":
            raise UserError(result.error or f"{path}: failed")
        results[job.index] = result
        if worker is not None:
            where[job.index] = worker
        report(result.summary_line())

    if jobs:
        signals: list[int] = []  # from here on a signal is acted on between Ray calls (see _signals_deferred)
        connection: RayConnection | None = None
        batch: _Batch | None = None
        try:
            with _signals_deferred(signals):
                connection = RayConnection(args.ray, num_cpus=args.ray_cpus, verbose=args.verbose)
                batch = _Batch(connection, args, out_dir.resolve(), jobs, expected, progress=options.progress,
                               signals=signals, pieces=pieces, split_seconds=split_seconds)
                batch.check_signals()
                batch.start()
                batch.run(finished)
        finally:
            if batch is not None:
                batch.stop()
            elif connection is not None:
                connection.close()
        rows = [("video", "result", "frames", "seconds", "node", "worker")]
        for k, path in enumerate(inputs):
            r, w = results[k], where.get(k)
            done = r.status == "ok"
            rows.append((Path(path).name, r.status, str(r.frames) if done else "-",
                         f"{r.seconds:.1f}" if done else "-", w.node if w else "-", w.label if w else "-"))
        for line in results_table(rows):
            report(line)
    return [results[k] for k in range(len(inputs))]
