from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import ferkit, write_clip
from ferkit.encode import VideoEncoder


def probe(path: Path) -> dict:
    """What ffprobe would say of a video file, read with PyAV: codecs, size, frames, sound."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio
        info = {"codec": video.codec_context.name, "pix_fmt": video.codec_context.pix_fmt,
                "size": (video.codec_context.width, video.codec_context.height),
                "frames": sum(1 for _ in container.decode(video))}
        if audio:
            info.update(audio=audio[0].codec_context.name, sample_rate=audio[0].codec_context.sample_rate,
                        audio_seconds=float(audio[0].duration * audio[0].time_base))
    return info


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def test_video_gives_playable_h264_with_the_sound_and_per_frame_rows(
    annotated_clip: tuple[Path, subprocess.CompletedProcess], clip_with_sound: Path
) -> None:
    out, result = annotated_clip
    assert "45 frames, 45 faces in 1 track" in result.stderr and "audio: aac copied" in result.stderr
    info = probe(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["size"] == (854, 480) and info["frames"] == 45
    assert info["audio"] == "aac" and info["sample_rate"] == 48000 and abs(info["audio_seconds"] - 1.5) < 0.05
    assert audio_packets(out) == audio_packets(clip_with_sound)  # the source's sound, copied as it was
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index first (+faststart): a browser can start before the end
    assert sorted(p.name for p in out.parent.iterdir()) == ["frames.csv", "talk_ferkit.mp4"]  # no temporary file left
    # Boxes are drawn, but no FPS counter: that is for live views (top left, where the webcam draws it).
    first, source = cv2.VideoCapture(str(out)).read()[1], cv2.VideoCapture(str(clip_with_sound)).read()[1]
    assert np.abs(first[:40, :150].astype(int) - source[:40, :150]).mean() < 6
    assert np.abs(first.astype(int) - source).max() > 100
    rows = list(csv.DictReader(open(out.with_name("frames.csv"))))
    assert [int(r["frame"]) for r in rows] == list(range(45))
    assert {r["track_id"] for r in rows} == {"1"}
    assert all(abs(sum(float(r[e]) for e in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")) - 1) < 1e-3 for r in rows)


def test_sound_browsers_cannot_play_is_reencoded_to_aac(fer_npz: Path, tmp_path: Path) -> None:
    """PCM sound in an AVI (as some cameras record it) cannot go into a browser's MP4 as it is."""
    write_clip(fer_npz.parent / "face_talking_854x480.mp4", tmp_path / "camera.avi", frames=30, audio="pcm_s16le")
    result = ferkit("video", tmp_path / "camera.avi", "--out", tmp_path / "out.mp4", "--detect-every", "30")
    assert "audio: pcm_s16le re-encoded to aac" in result.stderr
    info = probe(tmp_path / "out.mp4")
    assert info["codec"] == "h264" and info["frames"] == 30
    assert info["audio"] == "aac" and info["sample_rate"] == 48000 and abs(info["audio_seconds"] - 1.0) < 0.05


def test_a_failed_encoding_leaves_no_file(tmp_path: Path) -> None:
    """The video is written under a temporary name and only renamed once complete."""
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="interrupted"):
        with VideoEncoder(out, 30, (64, 48)) as encoder:
            for _ in range(60):
                encoder.write(np.zeros((48, 64, 3), np.uint8))
            assert out.with_name(".out.mp4.part").is_file() and not out.exists()
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with VideoEncoder(out, 29.97, (65, 49)) as encoder:  # odd sides: 4:2:0 video needs even ones
        encoder.write(np.full((49, 65, 3), 128, np.uint8))
    assert list(tmp_path.iterdir()) == [out] and probe(out)["size"] == (64, 48)


def test_video_broken_part_way_keeps_what_was_read(clip_with_sound: Path, tmp_path: Path) -> None:
    """An AVI cut in half (its frames stay decodable up to the cut): results and video for those, and a warning."""
    src, avi = cv2.VideoCapture(str(clip_with_sound)), tmp_path / "whole.avi"
    out = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 30, (854, 480))
    while (frame := src.read())[0]:
        out.write(frame[1])
    out.release()
    data = avi.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    result = ferkit("video", tmp_path / "cut.avi", "--csv", tmp_path / "cut.csv", "--out", tmp_path / "cut.mp4")
    rows = list(csv.DictReader(open(tmp_path / "cut.csv")))
    assert 10 < len(rows) < 45
    assert f"broke off after {len(rows)} of 45 frames" in result.stderr and "audio: none" in result.stderr
    assert probe(tmp_path / "cut.mp4")["frames"] == len(rows)


def test_bad_video_is_one_line_exit_2(clip_with_sound: Path, tmp_path: Path) -> None:
    (tmp_path / "x.mp4").write_bytes(b"\x00" * 1000)
    for path in (tmp_path / "x.mp4", tmp_path / "missing.mp4"):
        result = ferkit("video", path, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr and path.name in result.stderr
    (tmp_path / "file").write_text("")
    result = ferkit("video", clip_with_sound, "--out", tmp_path / "file" / "out.mp4", check=False)
    assert result.returncode == 2 and "out.mp4: cannot write a video there" in result.stderr and "Traceback" not in result.stderr
