"""RAVDESS emotional speech: audio + face video frames, 8 emotions, 24 actors (a download dataset).

``python -m cmkd_lab datasets download ravdess`` (or ``python data_scripts/get_ravdess.py``) runs
:data:`RAVDESS`; :func:`ravdess`, registered as dataset ``"ravdess"``, reads the converted arrays
offline.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .core import PairedDataset, from_arrays
from .download import DownloadSpec, Source, register_download
from .formats import FormatError, _load, area_resize, centre_square, log_mel_spectrogram, read_wav, zip_members

RAVDESS_BASE = "https://zenodo.org/records/1188976/files/"
RAVDESS_AUDIO_ZIP = "Audio_Speech_Actors_01-24.zip"
RAVDESS_EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
# modality-channel-emotion-intensity-statement-repetition-actor; modality 01 = audio+video, 03 = audio
RAVDESS_NAME = r"-01-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)"


def ravdess_video_zip(actor: int) -> str:
    return f"Video_Speech_Actor_{actor:02d}.zip"


def parse_actors(actors: str) -> list[int]:
    """ "1-24", "1,3,5" or "1-4,9" -> sorted actor numbers."""
    chosen = set()
    for part in actors.split(","):
        first, _, last = part.strip().partition("-")
        try:
            chosen.update(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"actors must look like '1-24' or '1,3,5', got {actors!r}") from None
    if not chosen or min(chosen) < 1 or max(chosen) > 24:
        raise ValueError(f"actors are numbered 1 to 24, got {actors!r}")
    return sorted(chosen)


def _video_frames(data: bytes, n_frames: int, image_size: int, member: str) -> np.ndarray:
    """``n_frames`` evenly spaced frames of an MP4, centre-cropped square, as (n_frames, 3, S, S) uint8."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            frames = []
            for frame in container.decode(stream):
                scale = max(1, min(frame.width, frame.height) // (2 * image_size))  # decode small, then average
                frames.append(
                    centre_square(
                        frame.to_ndarray(format="rgb24", width=frame.width // scale, height=frame.height // scale)
                    )
                )
    except (av.error.FFmpegError, IndexError) as error:
        raise FormatError(f"{member}: cannot decode the video ({error})") from None
    if not frames:
        raise FormatError(f"{member}: the video has no frames")
    picks = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
    chosen = np.stack([frames[i] for i in picks]).transpose(0, 3, 1, 2)
    return np.clip(np.rint(area_resize(chosen, image_size, image_size)), 0, 255).astype(np.uint8)


def convert_ravdess(
    raw: Path,
    *,
    actors: str = "1-24",
    n_frames: int = 4,
    image_size: int = 64,
    n_mels: int = 64,
    audio_frames: int = 128,
    seconds: float = 4.0,
) -> tuple[dict[str, np.ndarray], dict]:
    """Pair each spoken utterance's audio (WAV) with frames of its audio-visual recording (MP4).

    Audio: log mel spectrogram of the first ``seconds`` (``n_mels`` x ``audio_frames``). Video:
    ``n_frames`` evenly spaced frames, centre square crop (the face fills the middle of the
    1280x720 frame), shrunk to ``image_size``. Label: emotion (8 classes); group: actor.
    """
    chosen = parse_actors(actors)
    audio = {}
    for match, _archive, member in zip_members(raw / RAVDESS_AUDIO_ZIP, r"(?:^|/)03" + RAVDESS_NAME + r"\.wav$"):
        if int(match.group(5)) in chosen:
            audio[match.groups()] = member
    if not audio:
        raise FormatError(f"no Actor_XX/03-01-*.wav files of actors {actors} found in {raw / RAVDESS_AUDIO_ZIP}")
    spectrograms, frames, keys = [], [], []
    with zipfile.ZipFile(raw / RAVDESS_AUDIO_ZIP) as audio_zip:
        for actor in chosen:
            for match, video_zip, member in zip_members(
                raw / ravdess_video_zip(actor), r"(?:^|/)01" + RAVDESS_NAME + r"\.mp4$"
            ):
                key = match.groups()
                if key not in audio:
                    continue
                signal, sample_rate = read_wav(audio_zip.read(audio[key]))
                spectrograms.append(log_mel_spectrogram(signal, sample_rate, n_mels, audio_frames, seconds))
                frames.append(_video_frames(video_zip.read(member), n_frames, image_size, member))
                keys.append([int(k) for k in key])
    if not keys:
        raise FormatError(f"no audio-visual recording (Actor_XX/01-01-*.mp4) matches an audio file for actors {actors}")
    keys = np.asarray(keys)
    arrays = {
        "audio": np.stack(spectrograms),
        "frames": np.stack(frames),
        "labels": keys[:, 0] - 1,
        "intensity": keys[:, 1],
        "statement": keys[:, 2],
        "actor": keys[:, 4],
    }
    return arrays, {"class_names": RAVDESS_EMOTIONS, "actors": chosen}


def ravdess(stack_frames: bool = True) -> PairedDataset:
    """RAVDESS speech: ``audio`` (1 x mels x frames, log mel) and ``face`` frames in [0, 1]; actors as groups.

    ``stack_frames=True`` gives ``face`` as (3*frames, S, S) for a 2-D CNN; False as (frames, 3, S, S).
    """
    arrays, meta = _load("ravdess")
    face = arrays["frames"] / np.float32(255)
    if stack_frames:
        face = face.reshape(len(face), -1, *face.shape[-2:])
    return from_arrays(
        {"audio": arrays["audio"][:, None], "face": face},
        arrays["labels"],
        groups=arrays["actor"],
        name="ravdess",
        class_names=meta["class_names"],
    )


RAVDESS = DownloadSpec(
    name="ravdess",
    script="python data_scripts/get_ravdess.py",
    description="RAVDESS emotional speech (audio + face video frames, 8 emotions, 24 actors)",
    # Zenodo publishes md5 checksums for these files that the kit does not hold: each file's
    # sha256 is recorded on first download.
    sources=(Source(RAVDESS_AUDIO_ZIP, RAVDESS_BASE + RAVDESS_AUDIO_ZIP + "?download=1"),)
    + tuple(Source(ravdess_video_zip(a), RAVDESS_BASE + ravdess_video_zip(a) + "?download=1") for a in range(1, 25)),
    convert=convert_ravdess,
    needs=lambda options: [RAVDESS_AUDIO_ZIP] + [ravdess_video_zip(a) for a in parse_actors(options["actors"])],
    notes=(
        "About 0.2 GB of audio and 24 x ~0.5 GB of video (use --actors to fetch fewer); "
        "the converted data is about 120 MB."
    ),
    option_help={
        "actors": "which actors to download and convert, e.g. 1-24 or 1-4",
        "n_frames": "video frames kept per utterance",
        "image_size": "side of the square face frames",
        "n_mels": "mel bands of the audio spectrogram",
        "audio_frames": "time frames of the audio spectrogram",
        "seconds": "audio duration covered by the spectrogram",
    },
)


register_download(RAVDESS, ravdess)
