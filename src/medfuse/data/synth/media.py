"""Write a synthetic study's heart sound (WAV), echo clip (AVI) and ECG (WFDB) and name them for the manifest.

The files go to ``sounds/``, ``echo/`` and ``ecg/`` next to ``images/``, named like the study's
image; their manifest columns are :data:`MEDIA_COLUMNS` (relative paths, as ``image_path``).
Each recording draws from a random stream of its own, so adding or changing one never changes
another, nor the images, reports and vitals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medfuse.data.synth.cardiac import CardiacState
from medfuse.data.synth.clips import CLIP_FRAMES, CLIP_SIZE, render_echo_clip, write_clip
from medfuse.data.synth.ecg import ECG_LEADS, ECG_RATE, ECG_SECONDS, render_ecg, write_wfdb_record
from medfuse.data.synth.sounds import SOUND_RATE, SOUND_SECONDS, render_heart_sound, write_wav

MEDIA = ("sound", "clip", "ecg")
MEDIA_COLUMNS = ("heart_sound_path", "echo_path", "ecg_path")
MEDIA_FOLDERS = ("sounds", "echo", "ecg")

# What the files hold, for synth.json.
MEDIA_FORMATS = {
    "sound": {"column": "heart_sound_path", "format": "WAV 16-bit PCM", "sample_rate": SOUND_RATE,
              "seconds": SOUND_SECONDS},
    "clip": {"column": "echo_path", "format": "AVI Motion JPEG, greyscale", "frames": CLIP_FRAMES,
             "size": CLIP_SIZE},
    "ecg": {"column": "ecg_path", "format": "WFDB format 16 (.hea + .dat), mV", "sample_rate": ECG_RATE,
            "seconds": ECG_SECONDS, "leads": list(ECG_LEADS)},
}


def make_media_folders(out: Path) -> None:
    """Create the media folders under ``out``."""
    for folder in MEDIA_FOLDERS:
        (out / folder).mkdir(parents=True, exist_ok=True)


def write_study_media(
    out: Path, name: str, state: CardiacState, rngs: tuple[np.random.Generator, np.random.Generator, np.random.Generator],
    *, comments: dict[str, object] | None = None,
) -> dict[str, str]:
    """Return the manifest cells ``{column: relative path}`` after writing the three recordings of one study.

    ``rngs``: the sound's, the clip's and the ECG's random streams; ``comments`` go into the ECG header.
    """
    sound_rng, clip_rng, ecg_rng = rngs
    sound = f"sounds/{name}.wav"
    write_wav(out / sound, render_heart_sound(sound_rng, state), SOUND_RATE)
    clip_path = f"echo/{name}.avi"
    clip, fps = render_echo_clip(clip_rng, state)
    write_clip(out / clip_path, clip, fps)
    ecg = f"ecg/{name}.hea"
    write_wfdb_record(out / ecg, render_ecg(ecg_rng, state), ECG_RATE, ECG_LEADS, comments)
    return dict(zip(MEDIA_COLUMNS, (sound, clip_path, ecg)))
