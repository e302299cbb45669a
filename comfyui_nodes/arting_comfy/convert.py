"""PNG bytes ↔ ComfyUI IMAGE and MASK tensors.

IMAGE is ``[B, H, W, 3]`` float32 in 0..1 on the CPU (RGB, as ComfyUI's docs say; no
alpha). MASK is ``[B, H, W]`` or ``[H, W]``, 1 where the picture may change, which is
the daemon's convention too (white = may change). numpy, torch and Pillow come with
ComfyUI; they are imported inside the functions so importing the pack needs none.
"""

from __future__ import annotations

import io


def pngs_to_image(pngs: list[bytes]):
    """Decoded images as one IMAGE batch; they must share one size."""
    import numpy as np
    import torch
    from PIL import Image

    arrays = []
    for data in pngs:
        with Image.open(io.BytesIO(data)) as img:
            arrays.append(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise ValueError("The daemon returned images of different sizes "
                         f"({', '.join(f'{w}x{h}' for h, w in sorted(sizes))}), which one "
                         "IMAGE batch cannot hold; generate them one at a time.")
    return torch.from_numpy(np.stack(arrays))


def image_to_png(image) -> bytes:
    """The first image of an IMAGE batch as RGB PNG bytes."""
    return _rgb_png(_first(image, 3))


def image_to_pngs(image) -> list[bytes]:
    """Every image of an IMAGE batch as RGB PNG bytes."""
    tensor = image.detach().cpu()
    return [_rgb_png(item) for item in (tensor if tensor.dim() > 3 else tensor[None])]


def _rgb_png(item) -> bytes:
    """One ``[H, W, C]`` image as RGB PNG bytes."""
    import numpy as np
    import torch
    from PIL import Image

    array = item.float().clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if channels == 1:
        array = np.repeat(array, 3, axis=2)
    elif channels >= 3:
        array = array[:, :, :3]
    else:
        raise ValueError(f"The image has {channels} channels; connect an RGB image.")
    return _png(Image.fromarray(np.ascontiguousarray(array), "RGB"))


def mask_to_png(mask) -> bytes:
    """The first mask of a MASK batch as a greyscale PNG, white where it is 1."""
    import torch
    from PIL import Image

    array = _first(mask, 2).float().clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return _png(Image.fromarray(array, "L"))


def _first(tensor, item_dims: int):
    """The first item of a batch (or the tensor itself when it has no batch axis)."""
    tensor = tensor.detach().cpu()
    return tensor[0] if tensor.dim() > item_dims else tensor


def _png(img) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
