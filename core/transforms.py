"""Evaluation-time preprocessing built from an encoder's `Preprocess` description."""
from torchvision import transforms as T

from core.backbones import Preprocess

_INTERPOLATION = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}


def eval_transform(preprocess: Preprocess) -> T.Compose:
    """Resize the short side to size/crop_pct, centre-crop, normalise: PIL RGB -> [3, size, size]."""
    resize = int(round(preprocess.size / preprocess.crop_pct))
    return T.Compose([
        T.Resize(resize, interpolation=_INTERPOLATION[preprocess.interpolation]),
        T.CenterCrop(preprocess.size),
        T.ToTensor(),
        T.Normalize(preprocess.mean, preprocess.std),
    ])
