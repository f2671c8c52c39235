"""Annotated videos out: H.264 in MP4 (yuv420p, index first) with the source's sound, through PyAV.

OpenCV's VideoWriter can only write MPEG-4 Part 2 (`mp4v`) from its wheel, which browsers do not
play, and it drops the sound. PyAV's wheel ships libx264, so nothing is downloaded at run time.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Iterator

import av
import numpy as np

from .errors import VideoError

# Audio codecs browsers play from MP4 are copied packet for packet; any other (PCM from an AVI,
# Vorbis) is re-encoded to AAC, so the result plays everywhere the video does.
BROWSER_AUDIO = {"aac", "mp3", "opus", "flac"}


class VideoEncoder:
    """Write BGR frames as H.264 to `path`, with the audio of `audio_from` interleaved as frames come.

    The file is written under a hidden temporary name in the same folder and renamed to `path` by
    `close()`; leaving a `with` block by an exception removes it instead, so a failed or interrupted
    run never leaves a half-written video under the real name. Audio past the last frame written
    is left out, so a video that broke off part-way keeps its sound in step. x264's `veryfast`
    preset encodes 854x480 at about 1.5x the speed of its default here (48 against 31 FPS on
    2 cores), so writing keeps up with recognition; CRF 20 keeps the drawn labels sharp.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], audio_from: str | Path | None = None,
                 preset: str = "veryfast", crf: int = 20) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(f".{self.path.name}.part")
        self.rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001
        width, height = size[0] - size[0] % 2, size[1] - size[1] % 2  # 4:2:0 chroma needs even sides
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.partial.open("wb").close()  # FFmpeg opens the file only at the first frame: fail here instead
        except OSError as e:
            raise VideoError(f"{self.path}: cannot write a video there ({e.strerror or e})") from None
        self.container = av.open(str(self.partial), "w", format="mp4", options={"movflags": "+faststart"})
        self.video = self.container.add_stream("libx264", rate=self.rate)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.options = {"preset": preset, "crf": str(crf)}
        self.frames = 0
        self.source: av.container.InputContainer | None = None
        self.audio_in: av.audio.stream.AudioStream | None = None
        self.audio_out: av.audio.stream.AudioStream | None = None
        self.transcode = False
        self.packets: Iterator[av.Packet] | None = None  # the source's audio packets still to mux
        self.pending: av.Packet | None = None
        if audio_from is not None:
            self._add_audio(Path(audio_from))

    @property
    def audio(self) -> str:
        """What became of the source's sound, for the summary: `aac copied`, `pcm_s16le re-encoded to aac`, `none`."""
        if self.audio_out is None:
            return "none"
        name = self.audio_in.codec_context.name
        return f"{name} re-encoded to aac" if self.transcode else f"{name} copied"

    def _add_audio(self, source: Path) -> None:
        """An output audio stream for the source's first one, if it has one."""
        try:
            self.source = av.open(str(source))
        except av.FFmpegError:  # not a container FFmpeg can open: the video goes out without sound
            return
        if not self.source.streams.audio:
            self.source.close()
            self.source = None
            return
        self.audio_in = self.source.streams.audio[0]
        self.transcode = self.audio_in.codec_context.name not in BROWSER_AUDIO
        if self.transcode:
            self.audio_out = self.container.add_stream("aac", rate=self.audio_in.codec_context.sample_rate)
            # By channel count: AVI files name no layout, and AAC needs one (more than two channels are mixed down).
            self.audio_out.layout = "mono" if self.audio_in.codec_context.channels == 1 else "stereo"
        else:
            self.audio_out = self.container.add_stream_from_template(self.audio_in)
        self.packets = self.source.demux(self.audio_in)

    def write(self, frame: np.ndarray) -> None:
        """Encode one BGR frame (an odd last row or column is cut off), then the sound up to its time."""
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[: self.video.height, : self.video.width]), format="bgr24")
        picture.pts = self.frames
        self.container.mux(self.video.encode(picture))
        self.frames += 1
        self._audio_until(self.frames / self.rate)

    def _audio_until(self, seconds: Fraction) -> None:
        """Mux the source's audio packets that start before `seconds`."""
        while self.packets is not None:
            if self.pending is None:
                try:
                    self.pending = next(self.packets)
                except (StopIteration, av.FFmpegError):  # the end, or a file broken part-way: its sound ends there
                    self.packets = None
                    return
                if self.pending.dts is None:  # the demuxer's empty packet at the end
                    self.pending = None
                    continue
            if self.pending.dts * self.pending.time_base >= seconds:
                return
            packet, self.pending = self.pending, None
            if self.transcode:
                for samples in self.audio_in.codec_context.decode(packet):
                    samples.pts = None  # the encoder times its own frames
                    self.container.mux(self.audio_out.encode(samples))
            else:
                packet.stream = self.audio_out
                self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoders and give the file its real name."""
        self._audio_until(self.frames / self.rate)
        if self.transcode and self.audio_out is not None:
            self.container.mux(self.audio_out.encode(None))
        self.container.mux(self.video.encode(None))
        self._release()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            self._release()
        finally:
            self.partial.unlink(missing_ok=True)

    def _release(self) -> None:
        try:
            self.container.close()
        finally:
            if self.source is not None:
                self.source.close()

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, kind: type | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
