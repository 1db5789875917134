"""Stored image bytes -> the encoder's input tensor, by one of two paths that give the same tensor.

- `pil_tensor`: Pillow decode (EXIF orientation, CMYK, palette, alpha, 16-bit all handled by
  common.images.decode_rgb) + the encoder's torchvision transform. Runs in a thread pool (Pillow releases
  the GIL while decoding and resizing), so a CPU worker decodes the next batch during the forward pass.
- `TensorDecoder`: JPEG batches decoded by `torchvision.io.decode_jpeg` on the worker's device (nvJPEG
  on a GPU) and resized, cropped and normalised as tensor ops there. On an H200 even 14 PIL processes fed
  only 1.2k of the model's 10.9k images/s (issue 8), so a GPU worker decodes on the GPU. Only plain
  JPEGs take it (RGB or grey, no EXIF rotation); everything else falls back to `pil_tensor`.
"""
import io
from collections.abc import Sequence

import torch
from PIL import Image
from torchvision import io as tvio
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from common.images import decode_rgb
from core.backbones import Preprocess
from core.transforms import eval_transform

_MODES = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}
_ORIENTATION = 0x0112


def pil_tensor(data: bytes, preprocess: Preprocess, transform=None) -> torch.Tensor:
    """bytes -> float32 [3, size, size] on the CPU (the reference path)."""
    return (transform or eval_transform(preprocess))(decode_rgb(data))


def plain_jpeg(data: bytes) -> bool:
    """A JPEG the tensor path decodes exactly like Pillow: RGB or grey, upright. Reads the header only."""
    if not data.startswith(b"\xff\xd8\xff"):
        return False
    try:
        image = Image.open(io.BytesIO(data))
        orientation = image.getexif().get(_ORIENTATION, 1)
    except Exception:
        return False
    return image.format == "JPEG" and image.mode in ("RGB", "L") and orientation in (1, None)


class TensorDecoder:
    """Decode and preprocess a batch of JPEG bytes as tensor ops on `device` ('cuda' or 'cpu')."""

    def __init__(self, preprocess: Preprocess, device: str):
        self.preprocess, self.device = preprocess, torch.device(device)
        self.resize = int(round(preprocess.size / preprocess.crop_pct))
        self.mean = torch.tensor(preprocess.mean, device=self.device).view(3, 1, 1) * 255
        self.std = torch.tensor(preprocess.std, device=self.device).view(3, 1, 1) * 255

    def __call__(self, blobs: Sequence[bytes]) -> torch.Tensor:
        """JPEG bytes (each `plain_jpeg`) -> float32 [n, 3, size, size] on the device."""
        data = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
        images = tvio.decode_jpeg(data, mode=tvio.ImageReadMode.RGB, device=self.device)
        return torch.stack([self._prepare(image) for image in images])

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        # As torchvision's PIL pipeline: resize the short side (antialiased), round to 8 bits, centre-crop.
        resized = F.resize(image.float(), [self.resize], interpolation=_MODES[self.preprocess.interpolation],
                           antialias=True).clamp_(0, 255).round_()
        cropped = F.center_crop(resized, [self.preprocess.size])
        return (cropped - self.mean) / self.std
