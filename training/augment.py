"""Two-view augmentation (moco-v3's TwoCropsTransform), with cross-domain operations added.

Our queries are renderings of a concept in other media (posterised, sketched, restyled), so besides
moco-v3's crop/flip/jitter/grayscale/blur/solarize we sometimes posterise or turn a view into an
edge sketch: invariance to those is what lets a photo's embedding meet its rendering."""
import random

from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as T

from core.backbones import Preprocess


class TwoCropsTransform:
    """image -> [view_1, view_2], two independent draws of the same augmentation."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        return [self.transform(image), self.transform(image)]


class GaussianBlur:
    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


class Posterize:
    """Few colour levels, like flat illustration styles."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return ImageOps.posterize(image, random.choice([2, 3]))


class EdgeSketch:
    """Dark strokes on white, like a line drawing of the photo."""

    def __call__(self, image: Image.Image) -> Image.Image:
        edges = image.convert("L").filter(ImageFilter.FIND_EDGES)
        edges = ImageOps.autocontrast(edges)
        return ImageOps.invert(edges).convert("RGB")


class Solarize:
    def __call__(self, image: Image.Image) -> Image.Image:
        return ImageOps.solarize(image, 128)


def view_ops(config, size: int) -> list:
    """PIL -> PIL operations of one view: moco-v3 recipe plus posterise/edge-sketch."""
    s = config.jitter_strength
    return [
        T.RandomResizedCrop(size, scale=(config.crop_min_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(s, s, s, s / 4)], p=config.jitter_p),
        T.RandomGrayscale(p=config.grayscale_p),
        T.RandomApply([GaussianBlur()], p=config.blur_p),
        T.RandomApply([Posterize()], p=config.posterize_p),
        T.RandomApply([EdgeSketch()], p=config.edge_p),
        T.RandomApply([Solarize()], p=config.solarize_p),
    ]


def view_transform(config, preprocess: Preprocess) -> T.Compose:
    """One training view, ending in the encoder's own normalisation."""
    return T.Compose([*view_ops(config, config.image_size), T.ToTensor(), T.Normalize(preprocess.mean, preprocess.std)])


def two_view_transform(config, preprocess: Preprocess) -> TwoCropsTransform:
    return TwoCropsTransform(view_transform(config, preprocess))
