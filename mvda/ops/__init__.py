"""Pure functions on arrays and tensors: camera geometry, depth fits, stereo warp, meshes."""
