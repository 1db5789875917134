"""The feeding pipeline: the tensor (GPU) decode path gives the PIL path's tensor, checked here on the
CPU; batches keep their order; a bad file fails alone; closing early stops the pool."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from core.backbones import LITE0_PREPROCESS
from core.pipeline import Feeder
from core.preprocess import TensorDecoder, pil_tensor, plain_jpeg
from tests.factories import encode, photo_bytes, truncated_jpeg

PHOTOS = [photo_bytes(s, i) for s in ("dog", "cat", "teapot") for i in (0, 1)]


def rotated_jpeg() -> bytes:
    image = Image.open(io.BytesIO(photo_bytes("dog", 0)))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes())


def test_only_plain_jpegs_take_the_tensor_path():
    assert all(plain_jpeg(p) for p in PHOTOS)
    assert not plain_jpeg(rotated_jpeg())  # EXIF rotation: Pillow applies it, decode_jpeg on a GPU cannot
    assert not plain_jpeg(encode(Image.open(io.BytesIO(PHOTOS[0])).convert("CMYK"), "JPEG"))
    assert not plain_jpeg(encode(Image.new("RGB", (64, 64)), "PNG"))
    assert not plain_jpeg(b"\xff\xd8\xff garbage")


def test_tensor_decoder_matches_the_pil_path_on_cpu():
    reference = torch.stack([pil_tensor(p, LITE0_PREPROCESS) for p in PHOTOS])
    tensors = TensorDecoder(LITE0_PREPROCESS, "cpu")(PHOTOS)
    assert tensors.shape == reference.shape == (len(PHOTOS), 3, 224, 224)
    # libjpeg's IDCT and the two resamplers differ by a few grey levels at most (2/255 after normalising).
    difference = (tensors - reference).abs()
    assert difference.mean() < 0.02 and difference.max() < 0.5


def pillow_says_plain(data: bytes) -> bool:
    """The first definition of a plain JPEG, read by Pillow: the oracle for the marker scan."""
    try:
        image = Image.open(io.BytesIO(data))
        orientation = image.getexif().get(0x0112, 1)
    except Exception:
        return False
    return image.format == "JPEG" and image.mode in ("RGB", "L") and orientation in (1, None)


def jpeg_variants() -> dict[str, bytes]:
    image = Image.open(io.BytesIO(PHOTOS[0])).convert("RGB")

    def exif(**tags):
        block = Image.Exif()
        for tag, value in tags.items():
            block[{"orientation": 0x0112, "make": 0x010F}[tag]] = value
        return block.tobytes()
    mpo = io.BytesIO()
    image.save(mpo, "MPO", save_all=True, append_images=[image])
    return {"baseline": encode(image, "JPEG"), "grey": encode(image.convert("L"), "JPEG"),
            "progressive": encode(image, "JPEG", progressive=True), "444": encode(image, "JPEG", subsampling=0),
            "exif upright": encode(image, "JPEG", exif=exif(orientation=1)),
            "exif without orientation": encode(image, "JPEG", exif=exif(make="Camera")),
            "exif rotated": encode(image, "JPEG", exif=exif(orientation=6)),
            "exif mirrored": encode(image, "JPEG", exif=exif(orientation=2)),
            "xmp rotated": encode(image, "JPEG", xmp=b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'),
            "cmyk": encode(image.convert("CMYK"), "JPEG"), "multi-picture": mpo.getvalue(),
            "png": encode(image, "PNG"), "headers cut": PHOTOS[0][:200], "empty": b""}


def test_the_marker_scan_agrees_with_pillow_on_what_is_a_plain_jpeg():
    verdicts = {name: plain_jpeg(data) for name, data in jpeg_variants().items()}
    assert verdicts == {name: pillow_says_plain(data) for name, data in jpeg_variants().items()}
    assert {name for name, plain in verdicts.items() if plain} == {
        "baseline", "grey", "progressive", "444", "exif upright", "exif without orientation"}


@pytest.mark.parametrize("shape", [(3, 300, 400), (3, 400, 300), (3, 256, 256), (3, 256, 900), (3, 999, 257),
                                   (3, 224, 224), (1, 333, 500)])
def test_the_tensor_resize_is_torchvision_resize_and_centre_crop(shape):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F
    decoder = TensorDecoder(LITE0_PREPROCESS, "cpu")
    image = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(sum(shape)))
    reference = F.center_crop(F.resize(image.float(), [decoder.resize], interpolation=InterpolationMode.BICUBIC,
                                       antialias=True), [224])
    assert torch.equal(decoder._resize_and_crop(image), reference)


@pytest.mark.parametrize("pad_pixels,batch_side", [(48_000_000, 2048), (400_000, 600)])
def test_the_batched_resize_is_the_per_image_resize(monkeypatch, pad_pixels, batch_side):
    """Two matrix products per group give interpolate's resize and crop, with small groups and with
    images too large to pad (second case: groups split and outliers go one by one)."""
    import core.preprocess
    monkeypatch.setattr(core.preprocess, "PAD_PIXELS", pad_pixels)
    monkeypatch.setattr(core.preprocess, "BATCH_SIDE", batch_side)
    generator = torch.Generator().manual_seed(7)
    shapes = [(300, 400), (400, 300), (256, 256), (224, 224), (100, 150), (256, 900), (999, 257), (480, 640),
              (1200, 700), (333, 500)]
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator) for h, w in shapes]
    decoder = TensorDecoder(LITE0_PREPROCESS, "cpu")
    reference = torch.stack([decoder._resize_and_crop(image) for image in images])
    batched = decoder._resize_batch(images)
    assert batched.shape == (len(images), 3, 224, 224)
    assert (batched - reference).abs().max() < 1e-3  # only the order of the sums differs


def test_a_jpeg_the_batched_decode_refuses_fails_alone_and_the_rest_stay_on_the_tensor_path():
    blobs = [PHOTOS[0], truncated_jpeg(), PHOTOS[1]]  # the cut file's headers are whole: it looks plain
    assert plain_jpeg(blobs[1])
    batch = next(Feeder(LITE0_PREPROCESS, "cpu", workers=2, tensor_decode=True).batches(
        [(i, (lambda b=b: b)) for i, b in enumerate(blobs)], 3))
    assert batch.ids == [0, 2] and set(batch.failed) == {1}
    decoded = TensorDecoder(LITE0_PREPROCESS, "cpu")([PHOTOS[0], PHOTOS[1]])
    assert torch.equal(batch.tensor, decoded)  # not Pillow's few-grey-levels-different tensors


@pytest.mark.parametrize("tensor_decode,assemblers", [(False, 1), (True, 1), (True, 3)])
def test_batches_keep_order_and_a_bad_file_fails_alone(tensor_decode, assemblers):
    blobs = [PHOTOS[0], truncated_jpeg()[:200], PHOTOS[1], rotated_jpeg(), PHOTOS[2]]
    items = [(i, (lambda b=b: b)) for i, b in enumerate(blobs)] + [(99, _missing)]
    batches = list(Feeder(LITE0_PREPROCESS, "cpu", workers=2, tensor_decode=tensor_decode,
                          assemblers=assemblers).batches(items, 2))
    assert [b.ids for b in batches] == [[0], [2, 3], [4]]
    assert set(batches[0].failed) == {1} and set(batches[2].failed) == {99}
    assert "FileNotFoundError" in batches[2].failed[99]
    expected = pil_tensor(blobs[3], LITE0_PREPROCESS)  # the rotated one went through Pillow either way
    assert torch.allclose(batches[1].tensor[1], expected)


def _missing() -> bytes:
    raise FileNotFoundError("gone")


def counting_loader(read: list[int]):
    """loader(i) reads photo i (modulo the photos) and records i in `read` when it is called."""
    def loader(i):
        def load():
            read.append(i)
            return PHOTOS[i % len(PHOTOS)]
        return load
    return loader


def test_closing_early_leaves_later_batches_undone():
    read = []
    loader = counting_loader(read)
    batches = Feeder(LITE0_PREPROCESS, "cpu", workers=1).batches([(i, loader(i)) for i in range(40)], 2,
                                                                  prefetch=1)
    first = next(batches)
    batches.close()
    assert first.ids == [0, 1]
    assert len(read) < 40


def test_encoder_embeds_pipeline_batches_like_pil_images():
    from core.encoder import load_encoder
    from common.images import decode_rgb
    encoder = load_encoder("builtin:efficientnet-lite0").use_channels_last()
    batch = next(Feeder(encoder.preprocess, "cpu", tensor_decode=True).batches(
        [(i, (lambda p=p: p)) for i, p in enumerate(PHOTOS)], len(PHOTOS)))
    via_tensors = encoder.embed_tensor(batch.tensor)
    via_pil = encoder.embed([decode_rgb(p) for p in PHOTOS])
    cosines = (via_tensors * via_pil).sum(axis=1)
    assert np.all(cosines > 0.99), cosines


def test_one_feeder_serves_job_after_job():
    """Kept for the worker's life: a `batches` closed early (a job that yielded) leaves the pools
    ready for the next job's."""
    feeder = Feeder(LITE0_PREPROCESS, "cpu", workers=2)
    items = [(i, (lambda i=i: PHOTOS[i])) for i in range(len(PHOTOS))]
    early = feeder.batches(items, 2, prefetch=1)
    next(early)
    early.close()
    for _ in range(2):
        assert [b.ids for b in feeder.batches(items, 4)] == [[0, 1, 2, 3], [4, 5]]
    feeder.close()


def test_a_job_that_resumes_after_yielding_reuses_the_reads_started_ahead():
    """A job yields after its first batch; the job that resumes the same images takes the images the
    pool had already read and decoded for it instead of reading them again. A later call that asks for
    other images gets no stale carry-over: every image is read for it."""
    reads = []
    loader = counting_loader(reads)
    feeder = Feeder(LITE0_PREPROCESS, "cpu", workers=2)
    items = [(i, loader(i)) for i in range(6)]
    first = feeder.batches(items, 1, prefetch=2)
    assert next(first).ids == [0]
    first.close()  # the job yielded; batches 1 and 2 were submitted (read ahead, or about to be)

    resumed = list(feeder.batches(items[1:], 1))
    assert [b.ids for b in resumed] == [[1], [2], [3], [4], [5]]
    assert sorted(reads) == list(range(6))  # each image read once across both jobs
    expected = pil_tensor(PHOTOS[1], LITE0_PREPROCESS)
    assert torch.allclose(resumed[0].tensor[0], expected)

    other = feeder.batches([(i, loader(i)) for i in range(10, 13)], 1, prefetch=2)
    next(other)
    other.close()  # 11 and 12 carried over; the next call asks for neither
    assert [b.ids for b in feeder.batches([(i, loader(i)) for i in range(20, 22)], 1)] == [[20], [21]]
    assert reads.count(20) == reads.count(21) == 1
    feeder.close()


def test_make_feeder_takes_every_core_on_a_cpu_and_the_operators_count_when_set():
    import os

    from core.pipeline import make_feeder
    cpu = make_feeder(LITE0_PREPROCESS, "cpu")
    assert (cpu.workers, cpu.assemblers, cpu.decoder) == (len(os.sched_getaffinity(0)), 1, None)
    assert make_feeder(LITE0_PREPROCESS, "cpu", decode_workers=5).workers == 5
    cpu.close()
