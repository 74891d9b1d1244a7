"""Demo material: short vertical clips made with FFmpeg, and simulated annotators.

The clips are real H.264 + AAC files with ``+faststart`` (what ingestion produces), each visually and
audibly distinct, so the annotation page, the feature cache and training all have something real to
work on before people label anything. The simulated annotators follow a confusion model: each has a
skill (probability of the true label); a wrong answer stays within the true label's polarity most of
the time, and a few careless annotators answer at random or nearly always the same label.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curation.errors import MediaError
from curation.ffmpeg import ffmpeg_binary

__all__ = [
    "DemoClipSpec",
    "demo_clip_specs",
    "render_demo_clip",
    "SimulatedAnnotator",
    "ConfusionModel",
]

PLATFORMS = ("douyin", "kuaishou", "tiktok")
# One visual family per clip (cycled), so neighbouring clips look different at a glance.
_VISUALS = (
    "testsrc2=size={w}x{h}:rate={fps}",
    "mandelbrot=size={w}x{h}:rate={fps}",
    "smptebars=size={w}x{h}:rate={fps}",
    "life=size={w}x{h}:rate={fps}:mold=10:ratio=0.4:death_color=#203040:life_color=#f0c020",
    "cellauto=size={w}x{h}:rate={fps}:rule={rule}",
    "gradients=size={w}x{h}:rate={fps}:speed=0.05:seed={seed}",
    "rgbtestsrc=size={w}x{h}:rate={fps}",
    "color=c=0x{rgb}:size={w}x{h}:rate={fps}",
)


@dataclass(frozen=True)
class DemoClipSpec:
    """What one demo clip looks like, sounds like, and where it 'came from'."""

    index: int
    visual: str
    hue_degrees: int
    tone_hz: int
    second_tone_hz: int
    platform: str
    uploader: str
    language: str
    title: str


def demo_clip_specs(n: int, *, seed: int = 0, clips_per_uploader: int = 3) -> list[DemoClipSpec]:
    """Specs of ``n`` distinct clips; several clips share an uploader (as on real platforms)."""
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n):
        platform = PLATFORMS[i % len(PLATFORMS)]
        # Clips of one platform come every len(PLATFORMS) indices; group consecutive ones by uploader.
        uploader_no = (i // len(PLATFORMS)) // clips_per_uploader
        specs.append(
            DemoClipSpec(
                index=i,
                visual=_VISUALS[i % len(_VISUALS)],
                hue_degrees=int((i * 47) % 360),
                tone_hz=int(220 + 40 * (i % 17)),
                second_tone_hz=int(rng.integers(300, 1200)),
                platform=platform,
                uploader=f"{platform}_creator_{uploader_no:03d}",
                language="en" if platform == "tiktok" else "zh",
                title=f"Demo clip {i + 1}",
            )
        )
    return specs


def render_demo_clip(
    spec: DemoClipSpec,
    out_path: Path,
    *,
    duration_s: float = 3.0,
    width: int = 360,
    height: int = 640,
    fps: int = 30,
    ffmpeg: str | None = None,
) -> Path:
    """Render ``spec`` to ``out_path`` (9:16 H.264 yuv420p + AAC 44.1 kHz, ``+faststart``).

    Written to a temporary name and renamed, so a killed run never leaves a half-written clip.
    """
    visual = spec.visual.format(
        w=width, h=height, fps=fps, rule=30 + spec.index % 90, seed=spec.index,
        rgb=f"{(spec.index * 2654435761) & 0xFFFFFF:06x}",
    )
    # Two tones, the second pulsing, so clips also differ to the ear.
    audio = (
        f"aevalsrc=0.25*sin({spec.tone_hz}*2*PI*t)+0.15*sin({spec.second_tone_hz}*2*PI*t)*"
        f"(0.5+0.5*sin(2*PI*{1 + spec.index % 4}*t)):s=44100:c=stereo"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    args = [
        ffmpeg or ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", visual,
        "-f", "lavfi", "-i", audio,
        "-t", f"{duration_s:.3f}",
        "-vf", f"hue=h={spec.hue_degrees},format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-ar", "44100",
        "-movflags", "+faststart", "-f", "mp4", str(tmp),
    ]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"FFmpeg could not render demo clip {spec.index}: {proc.stderr.strip()[-300:]}")
    tmp.replace(out_path)
    return out_path



@dataclass(frozen=True)
class SimulatedAnnotator:
    """One simulated person: how often they are right and how they go wrong."""

    name: str
    skill: float  # probability of answering the true label
    careless: str | None = None  # None, "random" (uniform answers) or "constant" (mostly one label)
    favourite: int = 0  # the label a "constant" annotator keeps choosing
    seconds_per_clip: float = 8.0


@dataclass
class ConfusionModel:
    """Draw simulated judgements: right with p = skill, else mostly a label of the same polarity.

    >>> model = ConfusionModel(["a", "b", "c"], ["positive", "positive", "negative"], seed=1)
    >>> model.judge(SimulatedAnnotator("x", skill=1.0), "c")
    'c'
    """

    labels: Sequence[str]
    polarities: Sequence[str]
    within_polarity: float = 0.8  # share of mistakes that stay within the true polarity
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.polarities):
            raise ValueError("labels and polarities must have the same length")
        self._rng = np.random.default_rng(self.seed)

    def judge(self, annotator: SimulatedAnnotator, true_label: str) -> str:
        labels = list(self.labels)
        if annotator.careless == "random":
            return labels[int(self._rng.integers(len(labels)))]
        if annotator.careless == "constant" and self._rng.random() < 0.85:
            return labels[annotator.favourite % len(labels)]
        if self._rng.random() < annotator.skill:
            return true_label
        t = labels.index(true_label)
        same = [i for i, p in enumerate(self.polarities) if p == self.polarities[t] and i != t]
        other = [i for i in range(len(labels)) if i != t and i not in same]
        pool = same if same and (not other or self._rng.random() < self.within_polarity) else other
        return labels[int(self._rng.choice(pool))]

    def seconds(self, annotator: SimulatedAnnotator) -> float:
        # Careless people are fast; everyone varies around their own pace.
        base = 2.0 if annotator.careless else annotator.seconds_per_clip
        return float(max(0.5, self._rng.normal(base, base * 0.25)))

    def crowd(self, n: int, *, careless_share: float = 0.15) -> list[SimulatedAnnotator]:
        """``n`` annotators with skills spread between 0.55 and 0.95, a few of them careless."""
        n_careless = int(round(n * careless_share))
        people = []
        for i in range(n):
            careless = None
            if i >= n - n_careless:
                careless = "random" if (n - i) % 2 else "constant"
            people.append(
                SimulatedAnnotator(
                    name=f"sim{i + 1:02d}",
                    skill=float(self._rng.uniform(0.55, 0.95)),
                    careless=careless,
                    favourite=int(self._rng.integers(len(self.labels))),
                    seconds_per_clip=float(self._rng.uniform(5, 15)),
                )
            )
        return people
