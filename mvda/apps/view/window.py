"""The interactive window: Open3D's legacy ``VisualizerWithKeyCallback`` playing a :class:`FrameSource`.

Mouse orbit (left drag), pan (ctrl + left drag, or middle drag) and zoom (wheel) are Open3D's. Keys:
space play/pause, right/left arrow step one frame forward/back (and pause), ``r`` reset the view to
the chosen camera pose, ``q`` or Esc quit. The frame number and state are shown on a console status
line (the legacy Open3D window cannot change its title after it is created).

The window has its own event loop (``poll_events``), not a frame loop: frames are fetched on demand,
forwards and backwards, from the :class:`FrameSource`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mvda.cli import progress_bar
from mvda.errors import UserError

from .frames import FrameSource
from .scene import (CameraPose, GeometryBuilder, apply_camera, configure_render_option, open3d_module,
                    set_clip_planes, view_intrinsics)

__all__ = ["NO_DISPLAY_MESSAGE", "window_size", "display_problem", "run_viewer"]

NO_DISPLAY_MESSAGE = "no display: use --render out.mp4 or run under xvfb-run"

# GLFW key codes (what Open3D's key callbacks receive).
KEY_SPACE, KEY_ESCAPE, KEY_RIGHT, KEY_LEFT = 32, 256, 262, 263
KEY_Q, KEY_R = ord("Q"), ord("R")


def window_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the window for a video of (height, width) pixels: same aspect ratio, fits in
    1280x720; small videos are enlarged until their longer side is 640 pixels (if that still fits)."""
    fit = min(1280 / width, 720 / height)
    scale = min(fit, max(1.0, 640 / max(width, height)))
    return max(2, round(height * scale)), max(2, round(width * scale))


# --------------------------------------------------------------------------------------------------
# Display checks
# --------------------------------------------------------------------------------------------------
def _x11_reachable(display: str) -> bool:
    """Whether an X server answers on ``display`` (XOpenDisplay through ctypes; False without libX11)."""
    try:
        x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    except OSError:
        return False
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = x11.XOpenDisplay(display.encode())
    if not handle:
        return False
    x11.XCloseDisplay(handle)
    return True


def _wayland_reachable(env) -> bool:
    name = env.get("WAYLAND_DISPLAY", "")
    path = Path(name) if name.startswith("/") else Path(env.get("XDG_RUNTIME_DIR", "/nonexistent")) / name
    return path.exists()


def display_problem(environ=None) -> str | None:
    """Why no window can be opened here, or None when one can.

    Linux needs DISPLAY (an X server that answers) or WAYLAND_DISPLAY (an existing socket); without
    them Open3D silently falls back to an invisible offscreen context. macOS/Windows always have one.
    """
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return None
    display, wayland = env.get("DISPLAY", ""), env.get("WAYLAND_DISPLAY", "")
    if not display and not wayland:
        return NO_DISPLAY_MESSAGE
    if display and _x11_reachable(display):
        return None
    if wayland and _wayland_reachable(env):
        return None
    shown = display or wayland
    return f"cannot connect to display {shown!r}: use --render out.mp4 or run under xvfb-run"


# --------------------------------------------------------------------------------------------------
# The window
# --------------------------------------------------------------------------------------------------
@dataclass
class _ViewerState:
    index: int
    playing: bool
    step: int = 0
    reset_view: bool = False
    quit: bool = False


def _status_text(state: _ViewerState, total: int | None, at_end: bool) -> str:
    count = "?" if total is None else str(total)
    mode = "playing" if state.playing else ("paused at end" if at_end else "paused")
    return (f"frame {state.index}/{count} {mode}  [space play/pause, left/right step, r reset view, "
            "q quit]")


def run_viewer(source: FrameSource, builder: GeometryBuilder, pose: CameraPose, start_frame: int = 0,
               paused: bool = False, point_size: float = 2.0, title: str = "depth video") -> int:
    """Open the interactive window and play ``source`` until the user quits. Returns 0."""
    problem = display_problem()
    if problem is not None:
        raise UserError(problem)
    first = source.get(start_frame)
    if first is None:
        raise UserError(f"--draw_frame {start_frame} is past the end of the video "
                        f"({source.num_frames} frames)")
    o3d = open3d_module()

    height, width = window_size(source.height, source.width)
    vis = o3d.visualization.VisualizerWithKeyCallback()
    if not vis.create_window(window_name=title, width=width, height=height, visible=True):
        raise UserError(f"cannot open a window on display {os.environ.get('DISPLAY', '')!r}: "
                        "use --render out.mp4 or run under xvfb-run")
    state = _ViewerState(index=start_frame, playing=not paused)
    view_intr = view_intrinsics(builder.intr, height, width)

    def reset_view() -> None:
        ctr = vis.get_view_control()
        set_clip_planes(ctr, pose, builder.max_depth)
        apply_camera(ctr, view_intr, pose.extrinsic())

    def on_space(_vis) -> bool:
        state.playing = not state.playing
        return False

    def on_step(delta: int):
        def callback(_vis) -> bool:
            state.playing = False
            state.step += delta
            return False
        return callback

    def on_reset(_vis) -> bool:
        state.reset_view = True
        return False

    def on_quit(_vis) -> bool:
        state.quit = True
        return False

    for key, callback in ((KEY_SPACE, on_space), (KEY_RIGHT, on_step(1)), (KEY_LEFT, on_step(-1)),
                          (KEY_R, on_reset), (KEY_Q, on_quit), (KEY_ESCAPE, on_quit)):
        vis.register_key_callback(key, callback)

    status = progress_bar(total=None, desc="", bar_format="{desc}", mininterval=0.0)
    at_end = False
    try:
        vis.add_geometry(builder.update(first))
        configure_render_option(vis.get_render_option(), point_size)
        reset_view()
        # update_renderer() only asks for a redraw: the next poll_events() draws and shows the picture.
        # The status line of a change is therefore written after that poll_events(), so that it never
        # describes a picture the window does not show yet.
        pending_status = _status_text(state, source.num_frames, at_end)
        frame_period = 1.0 / float(source.fps) if source.fps else 1.0 / 30.0
        next_due = time.monotonic() + frame_period
        while not state.quit and vis.poll_events():
            if pending_status is not None:
                status.set_description_str(pending_status)
                pending_status = None
            wanted = None
            if state.step:
                wanted, state.step = state.index + state.step, 0
            elif state.playing and time.monotonic() >= next_due:
                wanted = 0 if at_end else state.index + 1  # play at the end starts over
            if state.reset_view:
                state.reset_view = False
                reset_view()
                vis.update_renderer()
            if wanted is None:
                time.sleep(0.005)
                continue
            frame = source.get(wanted)
            at_end = frame is None and wanted > state.index
            if frame is None:
                state.playing = False
            else:
                vis.update_geometry(builder.update(frame))
                vis.update_renderer()
                state.index = frame.index
                next_due = time.monotonic() + frame_period
            pending_status = _status_text(state, source.num_frames, at_end)
    finally:
        status.close()
        vis.destroy_window()
    return 0
