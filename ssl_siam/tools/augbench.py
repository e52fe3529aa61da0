"""Throughput benchmarks: batched tensor augmentation vs lightly's per-image PIL pipeline."""

import time
from collections.abc import Callable, Sequence

import torch

from ssl_siam.data.transforms.multiview import MultiViewAugment, ViewSpec


def _rate(step: Callable[[], int], seconds: float) -> float:
    """Samples per CPU-second of this process: ``step()`` runs (after one warm-up) until ``seconds`` pass.

    CPU time rather than wall time, so other load on the machine does not count against either side.
    """
    step()
    done, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        done += step()
    return done / elapsed


def augment_throughput(
    num_bands: int = 3,
    dtype: torch.dtype = torch.uint8,
    tile: int = 256,
    view_size: int = 224,
    batch: int = 64,
    seconds: float = 3.0,
    specs: Sequence[ViewSpec] | None = None,
    lightly_transform: Callable | None = None,
) -> dict[str, float | None]:
    """Single-thread samples/s of a view recipe (default: two SimSiam views per sample) on random ``tile``² tiles.

    "ours": ``MultiViewAugment`` on a [batch, num_bands, tile, tile] integer tensor, including the
    conversion to float [0, 1] (divided by the dtype's maximum); RGB ops on bands 0-2 when there are
    three or more. "lightly": ``lightly.transforms.SimSiamTransform(input_size=view_size)`` on PIL images
    of the same tiles (its ToTensor + Normalize included), only for 3-band uint8, else None.
    ``specs`` / ``lightly_transform`` replace the two SimSiam views on either side (e.g. BYOL or DINO
    multi-crop views), so another recipe is compared like for like.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        top = torch.iinfo(dtype).max
        tiles = torch.randint(0, top + 1, (batch, num_bands, tile, tile), generator=gen, dtype=dtype)
        rgb = (0, 1, 2) if num_bands >= 3 else None
        aug = MultiViewAugment(list(specs) if specs else [ViewSpec(view_size)] * 2, rgb_bands=rgb)

        def ours() -> int:
            aug(tiles.to(torch.float32).div_(top), generator=gen)
            return batch

        result: dict[str, float | None] = {"ours": _rate(ours, seconds), "lightly": None}
        if num_bands == 3 and dtype == torch.uint8:
            from lightly.transforms import SimSiamTransform
            from PIL import Image

            transform = lightly_transform or SimSiamTransform(input_size=view_size)
            images = [Image.fromarray(t.permute(1, 2, 0).numpy()) for t in tiles]

            def lightly() -> int:
                for image in images:
                    transform(image)
                return len(images)

            result["lightly"] = _rate(lightly, seconds)
        return result
    finally:
        torch.set_num_threads(threads)
