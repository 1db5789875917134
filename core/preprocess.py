"""Stored image bytes -> the encoder's input tensor, by one of two paths that give the same tensor.

- `pil_tensor`: Pillow decode (EXIF orientation, CMYK, palette, alpha, 16-bit all handled by
  common.images.decode_rgb) + the encoder's torchvision transform. Runs in a thread pool (Pillow releases
  the GIL while decoding and resizing), so a CPU worker decodes the next batch during the forward pass.
- `TensorDecoder`: JPEG batches decoded by `torchvision.io.decode_jpeg` on the worker's device (nvJPEG
  on a GPU) and resized, cropped and normalised as tensor ops there. On an H200 even 14 PIL processes fed
  only 1.2k of the model's 10.9k images/s (issue 8), so a GPU worker decodes on the GPU. Only plain
  JPEGs take it (RGB or grey, no EXIF rotation); everything else falls back to `pil_tensor`.
"""
import threading
import warnings
from collections.abc import Sequence

import torch
from torchvision import io as tvio

from common.images import decode_rgb
from core.backbones import Preprocess
from core.transforms import eval_transform

_ORIENTATION = 0x0112


def pil_tensor(data: bytes, preprocess: Preprocess, transform=None) -> torch.Tensor:
    """bytes -> float32 [3, size, size] on the CPU (the reference path)."""
    return (transform or eval_transform(preprocess))(decode_rgb(data))


def plain_jpeg(data: bytes) -> bool:
    """A JPEG the tensor path decodes exactly like Pillow: 8-bit Huffman-coded RGB or grey, upright, not a
    multi-picture file. Walks the markers up to the scan instead of opening the file with Pillow: on a GPU
    worker this check runs for every image in threads that share one GIL, and Pillow's parse (about 37 us)
    held the readers to 2.7k images/s on a 16-core H100 host (bench.gpu_embed). Anything unexpected
    answers False, which only sends the image down the Pillow path."""
    if not data.startswith(b"\xff\xd8\xff"):
        return False
    i, end, frame = 2, len(data), None
    while i + 4 <= end:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        segment = data[i + 4:i + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return False
        if marker == 0xDA:  # start of scan: every header was seen
            return frame is not None and frame[0] == 8 and frame[1] in (1, 3)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if marker not in _HUFFMAN_FRAMES or len(segment) < 6:
                return False  # lossless, hierarchical or arithmetic-coded: Pillow's path
            frame = (segment[0], segment[5])  # precision, components
        elif marker == 0xE1 and not _upright_app1(segment):
            return False
        elif marker == 0xE2 and segment.startswith(b"MPF\0"):
            return False  # multi-picture (MPO): Pillow's path, as before
        i += 2 + length
    return False


# Baseline, extended and progressive Huffman-coded frames (SOF0-SOF2).
_HUFFMAN_FRAMES = (0xC0, 0xC1, 0xC2)


def _upright_app1(segment: bytes) -> bool:
    """False when an APP1 segment (EXIF, or XMP, which Pillow's getexif also reads) may rotate the image."""
    if segment.startswith(b"Exif\0\0"):
        orientation = _exif_orientation(segment[6:])
        return orientation in (None, 1)
    return b"Orientation" not in segment  # XMP's tiff:Orientation, in whatever form: Pillow decides


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of IFD0 in a TIFF header; 0 (not upright) when the block cannot be read."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 0
    offset = int.from_bytes(tiff[4:8], order)
    if offset + 2 > len(tiff):
        return 0
    for k in range(int.from_bytes(tiff[offset:offset + 2], order)):
        entry = offset + 2 + 12 * k
        if entry + 12 > len(tiff):
            return 0
        if int.from_bytes(tiff[entry:entry + 2], order) == _ORIENTATION:
            if int.from_bytes(tiff[entry + 2:entry + 4], order) != 3:  # SHORT, as the standard has it
                return 0
            return int.from_bytes(tiff[entry + 8:entry + 10], order)
    return None


class TensorDecoder:
    """Decode and preprocess a batch of JPEG bytes as tensor ops on `device` ('cuda' or 'cpu').

    `batched_resize`: resize and crop the whole batch in two batched matrix products (`_resize_batch`)
    instead of one `interpolate` per image (`_resize_and_crop`), whose Python calls and kernel launches
    hold the GIL that the GPU worker's other threads need. On an H200 this decoder alone went from 8.6k
    to 10.9k images/s on 320-512 px JPEGs, and the worker's path about a quarter faster (bench.gpu_embed)."""

    def __init__(self, preprocess: Preprocess, device: str, batched_resize: bool = True):
        self.preprocess, self.device = preprocess, torch.device(device)
        self.batched_resize = batched_resize
        self.resize = int(round(preprocess.size / preprocess.crop_pct))
        self.mean = torch.tensor(preprocess.mean, device=self.device).view(3, 1, 1) * 255
        self.std = torch.tensor(preprocess.std, device=self.device).view(3, 1, 1) * 255
        self._local = threading.local()  # each thread's cache of `_axis` matrices

    def __call__(self, blobs: Sequence[bytes]) -> torch.Tensor:
        """JPEG bytes (each `plain_jpeg`) -> float32 [n, 3, size, size] on the device."""
        data = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
        images = tvio.decode_jpeg(data, mode=tvio.ImageReadMode.RGB, device=self.device)
        # Rounding and normalising run once on the batch: per image they were kernel launches and Python
        # calls that a GPU waits on (bench.gpu_embed).
        if self.batched_resize:
            batch = self._resize_batch(images)
        else:
            batch = torch.stack([self._resize_and_crop(image) for image in images])
        return (batch.clamp_(0, 255).round_() - self.mean) / self.std

    def _resized(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after Resize(short side = self.resize), as torchvision computes it."""
        short, long = min(height, width), max(height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def _resize_and_crop(self, image: torch.Tensor) -> torch.Tensor:
        """As torchvision's PIL pipeline (Resize(short side), CenterCrop), in bare torch calls: the
        torchvision functionals cost tens of microseconds of Python checks per image, and a GPU worker
        prepares thousands of images a second. tests/core/test_pipeline.py holds it to those functionals."""
        height, width = image.shape[-2:]
        size = self._resized(height, width)
        if (height, width) != size:
            image = torch.nn.functional.interpolate(
                image.unsqueeze(0).float(), size=size, mode=self.preprocess.interpolation, align_corners=False,
                antialias=True)[0]
        else:
            image = image.float()
        crop = self.preprocess.size
        top, left = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
        return image[:, top:top + crop, left:left + crop]

    def _resize_batch(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """`_resize_and_crop` of every image, as two batched matrix products per group of images.

        The antialiased resize is separable and linear: resized = A . image . B^T, where A (B) holds the
        weights of the input rows (columns) for each output row (column), and the centre crop keeps some
        rows of A and B. `_axis` gets A and B from `interpolate` itself, so the weights are torch's own;
        only the order of the sums differs (a few 1e-5 of a grey level before rounding). Images of a group
        differ in size, so each is zero-padded to the largest, with zero weights for the padding; a group
        holds at most PAD_PIXELS padded pixels. An image with a side over BATCH_SIDE is resized alone
        (`_resize_and_crop`): the dense products cost 224 x H x W multiply-adds per channel, where the
        banded per-image resize needs a few dozen per output pixel, and a panorama or a 40-megapixel scan
        padded with its group would take gigabytes."""
        crop = self.preprocess.size
        out = torch.empty((len(images), 3, crop, crop), device=self.device)
        group: list[int] = []
        height = width = 0
        for i, image in enumerate(images):
            h, w = image.shape[-2:]
            if max(h, w) > BATCH_SIDE:
                out[i] = self._resize_and_crop(image)
                continue
            if group and (len(group) + 1) * max(height, h) * max(width, w) > PAD_PIXELS:
                out[group] = self._resize_group([images[j] for j in group])
                group, height, width = [], 0, 0
            group.append(i)
            height, width = max(height, h), max(width, w)
        if group:
            out[group] = self._resize_group([images[j] for j in group])
        return out

    def _resize_group(self, images: list[torch.Tensor]) -> torch.Tensor:
        sizes = [tuple(image.shape[-2:]) for image in images]
        resized = [self._resized(h, w) for h, w in sizes]
        rows = _padded([self._axis(h, new[0]) for (h, _), new in zip(sizes, resized)]).unsqueeze(1)  # [n,1,crop,H]
        cols = _padded([self._axis(w, new[1]) for (_, w), new in zip(sizes, resized)]).unsqueeze(1)  # [n,1,crop,W]
        pixels = _padded(images).float()                                                          # [n,3,H,W]
        return torch.matmul(torch.matmul(rows, pixels), cols.transpose(-1, -2))

    def _axis(self, length: int, resized: int) -> torch.Tensor:
        """[crop, length]: the weights of `length` input pixels for the cropped outputs of a resize of one
        axis to `resized`, read off `interpolate` applied to the identity. Cached (sizes repeat) per thread:
        each Feeder assembler works on a CUDA stream of its own, and a matrix shared across streams could
        be read before the kernels that make it had run, or its memory reused while another stream reads
        it."""
        axes = getattr(self._local, "axes", None)
        if axes is None:
            axes = self._local.axes = {}  # (length, resized length) -> [crop, length]
        key = (length, resized)
        matrix = axes.get(key)
        if matrix is None:
            eye = torch.eye(length, device=self.device).view(1, 1, length, length)
            if resized != length:
                eye = torch.nn.functional.interpolate(eye, size=(resized, length), mode=self.preprocess.interpolation,
                                                      align_corners=False, antialias=True)
            crop = self.preprocess.size
            top = int(round((resized - crop) / 2.0))
            matrix = eye[0, 0, top:top + crop].contiguous()
            if len(axes) >= AXIS_CACHE:
                axes.clear()
            axes[key] = matrix
        return matrix


# `_resize_batch`'s bounds: padded pixels of one group (x 3 channels x 4 bytes: 576 MB of device memory,
# about 100 images of 512 x 683) and the longest side resized in a group (bench.gpu_embed's 320-512 px set
# fits; its 768-1024 px set goes image by image).
PAD_PIXELS = 48_000_000
BATCH_SIDE = 768
# Cached axis matrices per thread (224 x at most BATCH_SIDE floats each, up to 688 kB: at most 176 MB of
# device memory per assembler thread when full, about half that for photos of ordinary sizes).
AXIS_CACHE = 256


def _padded(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack tensors that differ in their last two sizes, zero-padded to the largest."""
    height = max(t.shape[-2] for t in tensors)
    width = max(t.shape[-1] for t in tensors)
    if all(t.shape[-2:] == (height, width) for t in tensors):
        return torch.stack(list(tensors))
    with warnings.catch_warnings():  # "nested tensors are a prototype": strided ones pad images of two sizes
        warnings.simplefilter("ignore", UserWarning)
        nested = torch.nested.nested_tensor(list(tensors))
    return nested.to_padded_tensor(0.0, (len(tensors), *tensors[0].shape[:-2], height, width))
