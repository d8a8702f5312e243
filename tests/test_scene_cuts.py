"""Scene cuts: the cut list parser, the detector on synthetic clips, and per-shot conversions (each shot of
a two-shot clip converts exactly as that shot alone), with the cut list in the depth file's tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import video_metric_convert
from depth_codec import TAG_SCENE_CUTS, DepthVideoReader
from mvda.ops.scene_cuts import CutDetector, CutList, ListedCuts, cut_score, parse_cut_list, thumbnail
from tests.helpers import one_line_error, synthetic_frames, write_lossless_video

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 36, 48


def detect(frames) -> list[int]:
    det = CutDetector()
    return [c for i, f in enumerate(frames) for c in det.push(i, f)] + det.finish()


def panning_clip(n: int, seed: int = 1) -> np.ndarray:
    """A continuous shot: the camera pans across a smooth random texture while the light brightens
    from half to full and shifts towards blue."""
    rng = np.random.default_rng(seed)
    big = gaussian_filter(rng.uniform(0, 255, (200, 420, 3)), (4, 4, 0))
    big = (big - big.min()) / (big.max() - big.min()) * 255
    frames = []
    for i in range(n):
        view = big[20 + i // 2: 20 + i // 2 + H, 10 + 3 * i: 10 + 3 * i + W]
        light = 0.5 + 0.5 * i / n
        frame = view * light + np.array([0.0, 0.0, 40.0 * i / n])
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


# ---------------------------------------------------------------------------------------------------
# parsing


def test_parse_cut_list_frames_and_times():
    text = "# cuts\n48\n\n00:00:04.000\n1:02.5\n2.5s\n7.25\n120  # a comment\n0\n48\n"
    cuts = parse_cut_list(text)
    assert cuts == CutList(frames=(48, 120), seconds=(2.5, 4.0, 7.25, 62.5))
    assert len(cuts) == 6


def test_parse_cut_list_bad_line_names_it():
    with pytest.raises(ValueError, match=r"cuts.txt line 2: 'twelve' is neither a frame number"):
        parse_cut_list("12\ntwelve\n", name="cuts.txt")


def test_parse_scenedetect_csv():
    text = ("Timecode List:,00:00:02.000,00:00:05.000\n"
            "Scene Number,Start Frame,Start Timecode,Start Time (seconds),End Frame,End Timecode,End Time (seconds),"
            "Length (frames),Length (timecode),Length (seconds)\n"
            "1,1,00:00:00.000,0.000,48,00:00:02.000,2.000,48,00:00:02.000,2.000\n"
            "2,49,00:00:02.000,2.000,120,00:00:05.000,5.000,72,00:00:03.000,3.000\n"
            "3,121,00:00:05.000,5.000,200,00:00:08.333,8.333,80,00:00:03.333,3.333\n")
    assert parse_cut_list(text) == CutList(frames=(48, 120))


def test_listed_cuts_hit_the_first_frame_at_or_after():
    listed = ListedCuts(CutList(frames=(5,), seconds=(1.0,)), fps=10.0)
    hits = [c for i in range(15) for c in listed.push(i, None, i / 10.0)]
    assert hits == [5, 10]


# ---------------------------------------------------------------------------------------------------
# detection


def test_thumbnail_ignores_gain_and_offset():
    frame = synthetic_frames(1, 72, 96)[0].astype(np.float32)
    assert thumbnail(frame).shape == (24, 32, 3)
    assert cut_score(thumbnail(frame), thumbnail(frame + 20)) < 1e-5  # an offset: nothing
    assert cut_score(thumbnail(frame), thumbnail(frame * 0.5)) < 0.1  # half the light: little (the std floor)
    assert cut_score(thumbnail(frame), thumbnail(panning_clip(1)[0])) > 0.7  # other content: a lot


def test_detector_finds_the_cut_of_a_two_shot_clip():
    frames = np.concatenate([synthetic_frames(40, H, W, seed=0), synthetic_frames(40, H, W, seed=5)])
    assert detect(frames) == [40]
    frames = np.concatenate([panning_clip(30), synthetic_frames(25, H, W, seed=2)])
    assert detect(frames) == [30]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 5])
def test_no_false_cut_in_a_continuous_shot(seed):
    """Camera motion and a lighting change (panning_clip), and the test suite's synthetic clips (a moving
    disc, fast colour changes): no cut."""
    assert detect(panning_clip(90, seed)) == []
    assert detect(synthetic_frames(120, H, W, seed)) == []


# ---------------------------------------------------------------------------------------------------
# conversions


def two_shot_clips(folder: Path, first: int, second: int) -> dict[str, Path]:
    """A two-shot clip (a panning shot of ``first`` frames, then ``second`` frames of another scene) and
    each of its shots alone, lossless."""
    a, b = panning_clip(first, seed=4), synthetic_frames(second, H, W, seed=7)
    return {
        "both": write_lossless_video(folder / "both.mkv", np.concatenate([a, b])),
        "a": write_lossless_video(folder / "a.mkv", a),
        "b": write_lossless_video(folder / "b.mkv", b),
    }


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> dict[str, Path]:
    """A two-shot clip (22 + 26 frames) and each of its shots alone."""
    return two_shot_clips(tmp_path_factory.mktemp("shots"), 22, 26)


@pytest.fixture(scope="module")
def long_shots(tmp_path_factory) -> dict[str, Path]:
    """A two-shot clip (70 + 40 frames) whose first shot is longer than the global fit's 32 DA-V2 frames:
    converted alone it takes every 3rd frame, a stride the shot's length decides."""
    return two_shot_clips(tmp_path_factory.mktemp("long_shots"), 70, 40)


def convert(checkpoints, clip: Path, out: Path, *extra: str) -> tuple[np.ndarray, DepthVideoReader]:
    args = ["--encoder", "vits", "--metric_encoder", "vits", "--input_size", "28", "--device", "cpu",
            "--vda_checkpoint", str(checkpoints["vda"]), "--metric_checkpoint", str(checkpoints["dav2"]),
            "--no_progress", "--input_video", str(clip), "--output_dir", str(out), *extra]
    assert video_metric_convert.main(args) == 0
    path = out / f"{clip.stem}_depth.mkv"
    with DepthVideoReader(path) as reader:
        return np.stack(list(reader)), reader


@pytest.mark.slow
def test_global_fit_with_detected_cuts_samples_each_shot_as_alone(tmp_path, procedural_checkpoints, long_shots):
    """With ``--scene_cuts auto`` a shot's length is unknown while it streams; ``--fit global`` finds the
    cuts first, so a 70-frame shot gets the DA-V2 frames (every 3rd) that converting it alone picks."""
    both, reader = convert(procedural_checkpoints, long_shots["both"], tmp_path / "both", "--fit", "global")
    assert reader.info.tag(TAG_SCENE_CUTS) == "70"
    a, _ = convert(procedural_checkpoints, long_shots["a"], tmp_path / "a", "--fit", "global")
    b, _ = convert(procedural_checkpoints, long_shots["b"], tmp_path / "b", "--fit", "global")
    assert_close(both[:70], a)
    assert_close(both[70:], b)


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    rel = np.abs(actual - expected) / expected
    assert rel.max() <= 1e-3, rel.max()


@pytest.mark.parametrize("fit, cuts", [("rolling", "auto"), ("global", "file"), ("rolling", "file")])
def test_each_shot_converts_as_that_shot_alone(tmp_path, procedural_checkpoints, shots, capsys, fit, cuts):
    extra = ["--fit", fit]
    if cuts == "file":
        (tmp_path / "cuts.txt").write_text("22\n")
        extra += ["--scene_cuts", str(tmp_path / "cuts.txt")]
    both, reader = convert(procedural_checkpoints, shots["both"], tmp_path / "both", *extra)
    assert reader.info.tag(TAG_SCENE_CUTS) == "22"
    assert ", 2 shots ->" in capsys.readouterr().out
    a, _ = convert(procedural_checkpoints, shots["a"], tmp_path / "a", "--fit", fit)
    b, _ = convert(procedural_checkpoints, shots["b"], tmp_path / "b", "--fit", fit)
    assert_close(both[:22], a)
    assert_close(both[22:], b)
    # Without cuts the shots run together: the second shot's depth differs from its own conversion.
    together, reader = convert(procedural_checkpoints, shots["both"], tmp_path / "off", "--fit", fit,
                               "--scene_cuts", "off")
    assert reader.info.tag(TAG_SCENE_CUTS) is None
    assert np.abs(together[22:] - b).max() / b.max() > 1e-2


def test_summary_line_counts_shots(tmp_path, procedural_checkpoints, shots, capsys):
    convert(procedural_checkpoints, shots["both"], tmp_path, "--max_len", "40")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "both.mkv: 40 frames" in line and ", 2 shots ->" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both_depth.mkv"]  # no temporary file left


def test_bad_cut_file_is_one_line(tmp_path, procedural_checkpoints, shots, capsys):
    bad = tmp_path / "cuts.txt"
    bad.write_text("12\nabc\n")
    args = ["--input_video", str(shots["a"]), "--output_dir", str(tmp_path / "o"), "--scene_cuts", str(bad),
            "--device", "cpu", "--no_progress"]
    assert video_metric_convert.main(args) == 2
    one_line_error(capsys, "line 2: 'abc' is neither a frame number")
    assert video_metric_convert.main([*args[:5], str(tmp_path / "missing.txt"), *args[6:]]) == 2
    one_line_error(capsys, "missing.txt: cannot read the cut list")
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_report_picture(tmp_path, procedural_checkpoints, shots):
    import matplotlib.image

    from mvda.apps.report import report_path, strip_indices

    assert strip_indices(48) == [0, 9, 19, 28, 38, 47]
    convert(procedural_checkpoints, shots["both"], tmp_path, "--report")
    png = tmp_path / "both_depth_report.png"
    assert report_path(tmp_path / "both_depth.mkv") == png
    image = matplotlib.image.imread(png)
    assert image.shape[0] == 650 and image.shape[1] == 1200
    assert image[..., :3].std() > 0.05  # not blank
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both_depth.mkv", "both_depth_report.png"]


def test_cut_list_written_in_place_or_remuxed_when_too_long(tmp_path, procedural_checkpoints, shots, monkeypatch):
    """The cut list fills the room reserved in the header (the depth file is written once: no remux); a
    list longer than the room makes the file be remuxed with it, leaving nothing else behind. Without a
    cut the reserved tag is removed."""
    import mvda.apps.convert as convert_module

    def no_remux(*a, **k):
        raise AssertionError("the depth file was remuxed")

    monkeypatch.setattr(convert_module, "join_videos", no_remux)
    once, reader = convert(procedural_checkpoints, shots["both"], tmp_path / "once")
    assert reader.info.tag(TAG_SCENE_CUTS) == "22"
    _, reader = convert(procedural_checkpoints, shots["a"], tmp_path / "one_shot")
    assert reader.info.tag(TAG_SCENE_CUTS) is None
    monkeypatch.undo()
    monkeypatch.setattr(convert_module, "fill_reserved_tag", lambda *a, **k: False)  # as if it did not fit
    remuxed, reader = convert(procedural_checkpoints, shots["both"], tmp_path / "remuxed")
    assert reader.info.tag(TAG_SCENE_CUTS) == "22"
    np.testing.assert_array_equal(remuxed, once)
    assert sorted(p.name for p in (tmp_path / "remuxed").iterdir()) == ["both_depth.mkv"]


def test_global_fit_detects_the_cuts_once(tmp_path, procedural_checkpoints, shots, monkeypatch):
    """--fit global with --scene_cuts auto finds the cuts in its pre-scan; the conversion then uses that
    list instead of running the detector over the frames a second time."""
    seen = []
    original = CutDetector.push

    def push(self, index, *a, **k):
        seen.append(index)
        return original(self, index, *a, **k)

    monkeypatch.setattr(CutDetector, "push", push)
    _, reader = convert(procedural_checkpoints, shots["both"], tmp_path, "--fit", "global", "--fov", "off")
    assert reader.info.tag(TAG_SCENE_CUTS) == "22"
    assert seen == list(range(48))  # each frame once: the pre-scan's
