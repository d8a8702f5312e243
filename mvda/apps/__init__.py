"""The four jobs behind the scripts: convert, stereo, grey, view."""
