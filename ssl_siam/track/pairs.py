"""SiamFC training pairs from annotated sequences: an exemplar crop of the target in frame ``i`` and a search crop
around it in frame ``j``, ``|i − j| ≤ max_gap``, both frames with the target present.

Crops follow SiamFC's geometry (Bertinetto et al. 2016): the exemplar is a square of side ``sqrt((w + p)(h + p))``,
``p = context · (w + h)``, around the box, resized to ``exemplar_size``; the search crop has the same scale factor and
``search_size`` px, so it covers ``search_size / exemplar_size`` times the exemplar. Unlike the paper, whose search
crops are centred on the target (which teaches a centre bias when the features are padded), the search centre is
moved off the target by up to ``max_shift`` search px, and the sample carries where the target is. Area outside a
frame is filled with the frame's band means. Workers return raw float crops; normalisation and augmentation happen on
the training device (track/task.py). Every sample is a function of its index and the seed, so a resumed run draws the
same pairs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ssl_siam.core.errors import DataError
from ssl_siam.track.sequences import Sequence


def context_side(w: np.ndarray | float, h: np.ndarray | float, context: float) -> np.ndarray | float:
    """Side in frame px of SiamFC's exemplar square for a ``w`` × ``h`` box: ``sqrt((w + p)(h + p))``,
    ``p = context · (w + h)``."""
    p = context * (w + h)
    return np.sqrt((w + p) * (h + p))


def crop_windows(frame: Tensor, centres: Tensor, sides: Tensor, size: int, fill: Tensor) -> Tensor:
    """Square windows of one frame ``[C, H, W]``, resampled bilinearly to ``[N, C, size, size]``.

    ``centres`` [N, 2] (x, y) and ``sides`` [N] are in frame px, continuous coordinates (pixel ``i`` spans
    ``[i, i + 1)``, so a box ``x, y, w, h`` is centred at ``x + w/2, y + h/2``); area outside the frame takes ``fill``
    [C]. Downsampling by more than 2x aliases (no antialiasing): crops here are at most mildly reduced."""
    n, (height, width) = len(centres), frame.shape[-2:]
    steps = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5  # [size] pixel centres as side fractions
    xs = centres[:, 0, None] + steps * sides[:, None]  # [N, size]
    ys = centres[:, 1, None] + steps * sides[:, None]
    gx = (2 * xs / width - 1)[:, None, :].expand(n, size, size)
    gy = (2 * ys / height - 1)[:, :, None].expand(n, size, size)
    grid = torch.stack([gx, gy], dim=-1).reshape(1, n * size, size, 2)
    fill = fill.view(-1, 1, 1)
    out = F.grid_sample((frame - fill)[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(-1, n, size, size).transpose(0, 1) + fill  # [N, C, size, size]


def box_centre(box: np.ndarray) -> Tensor:
    return torch.tensor([box[0] + box[2] / 2, box[1] + box[3] / 2], dtype=torch.float32)


class TrackingPairs(Dataset):
    """``samples_per_epoch`` pairs ``{"exemplar": [C, E, E], "search": [C, S, S], "offset": [2]}`` (raw float32;
    ``offset``: the target's (x, y) in search px from the search centre).

    A sample picks a present frame uniformly among all sequences (so a sequence is drawn in proportion to its
    frames with the target), then another present frame of that sequence at most ``max_gap`` away (the same frame
    only when there is none); frames without a box are never used."""

    def __init__(self, sequences: list[Sequence], *, exemplar_size: int, search_size: int, context: float,
                 max_gap: int, max_shift: float, stretch: float, samples_per_epoch: int, seed: int) -> None:
        self.sequences = sequences
        self.present = [np.flatnonzero(s.present) for s in sequences]
        self.ends = np.cumsum([len(p) for p in self.present])
        if not sequences or self.ends[-1] == 0:
            raise DataError(f"no frame with a box in {len(sequences)} sequences: training needs annotated targets")
        bands = {s.frames.num_bands for s in sequences}
        if len(bands) != 1:
            raise DataError(f"sequences with {sorted(bands)} bands: training needs one band count (see data.bands)")
        self.num_bands = bands.pop()
        self.exemplar_size, self.search_size, self.context = exemplar_size, search_size, context
        self.max_gap, self.max_shift, self.stretch = max_gap, max_shift, stretch
        self.samples_per_epoch, self.seed = samples_per_epoch, seed

    def __len__(self) -> int:
        return self.samples_per_epoch

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """(sequence, exemplar frame, search frame)."""
        k = int(rng.integers(self.ends[-1]))
        s = int(np.searchsorted(self.ends, k, side="right"))
        present = self.present[s]
        i = int(present[k - (self.ends[s - 1] if s else 0)])
        near = present[(np.abs(present - i) <= self.max_gap) & (present != i)]
        return s, i, int(rng.choice(near)) if len(near) else i

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, index])
        s, i, j = self.draw(rng)
        seq = self.sequences[s]
        stretch = 1 + rng.uniform(-self.stretch, self.stretch)
        shift = rng.uniform(-self.max_shift, self.max_shift, size=2)  # search centre from the target, search px
        side_z = float(context_side(seq.boxes[i, 2], seq.boxes[i, 3], self.context))
        side_x = float(context_side(seq.boxes[j, 2], seq.boxes[j, 3], self.context)) * stretch
        side_x *= self.search_size / self.exemplar_size
        frame_i = torch.from_numpy(seq.frames.read(i))
        frame_j = frame_i if j == i else torch.from_numpy(seq.frames.read(j))
        exemplar = crop_windows(frame_i, box_centre(seq.boxes[i])[None], torch.tensor([side_z]), self.exemplar_size,
                                frame_i.mean(dim=(1, 2)))
        centre = box_centre(seq.boxes[j]) + torch.from_numpy(shift).float() * side_x / self.search_size
        search = crop_windows(frame_j, centre[None], torch.tensor([side_x]), self.search_size,
                              frame_j.mean(dim=(1, 2)))
        return {"exemplar": exemplar[0], "search": search[0], "offset": torch.from_numpy(-shift).float()}


def sample_pixels(sequences: list[Sequence], num_frames: int, seed: int, per_frame: int = 4096) -> np.ndarray:
    """[C, N] raw values of up to ``per_frame`` random pixels of ``num_frames`` frames spread over the sequences
    (for the band statistics)."""
    rng = np.random.default_rng(seed)
    frames = [(s, i) for s, seq in enumerate(sequences) for i in range(len(seq.frames))]
    chosen = rng.choice(len(frames), size=min(num_frames, len(frames)), replace=False)
    values = []
    for k in np.sort(chosen):
        s, i = frames[k]
        pixels = sequences[s].frames.read(i).reshape(sequences[s].frames.num_bands, -1)
        values.append(pixels[:, rng.choice(pixels.shape[1], size=min(per_frame, pixels.shape[1]), replace=False)])
    return np.concatenate(values, axis=1).astype(np.float64)
