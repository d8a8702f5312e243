"""metric video depth anything: the logic behind the four scripts.

Layout (each file does one job):

* :mod:`mvda.errors` the one user-error exception; :mod:`mvda.cli` shared flags, logging, ``run_cli``;
  :mod:`mvda.device` device and precision choice.
* :mod:`mvda.io` PyAV video reading and writing; :mod:`mvda.frames` the one frame loop
  (source -> step -> sinks, on their own threads; abort, progress and atomic output).
* :mod:`mvda.ops` pure functions: camera geometry, depth fits, stereo warp, meshes.
* :mod:`mvda.apps` the four jobs: convert, stereo, grey, view.

The public depth codec is the top-level module :mod:`depth_codec`; the networks are the packages
``video_depth_anything`` and ``depth_anything_v2``, which never import :mod:`mvda`.
"""
