"""Reading image and mask files, whatever their mode, with one clear error per bad file.

Pillow decodes both.  It reads the header before the pixels, so an oversized image is refused
before its memory is allocated; it reports a truncated file instead of returning grey-filled
pixels; and it keeps a palette PNG's indices.  (OpenCV expands a palette to colours, which turned
BDD100K's and PASCAL VOC's masks, "P" mode with one class id per palette index, into RGB images.)

* Images become ``H×W×3`` RGB ``uint8``: alpha is dropped (not composited), grey, palette and
  CMYK images are converted, 16-bit samples keep their high byte, and the EXIF orientation is
  applied, as OpenCV and the annotation tools do.
* Masks become ``H×W`` ``uint8`` ids exactly as stored: a palette PNG gives its indices, a grey PNG
  its values; a 16-bit PNG must hold ids up to 255.  An RGB(A) file whose channels are all equal is
  a grey map saved as colour and is read as one; any other colour file is refused as a
  colour-coded label map (e.g. Cityscapes ``*_color.png`` given instead of ``*_labelIds.png``).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from segal.errors import UserError

# 100 megapixels: 300 MB decoded as RGB, about 10000×10000.  Larger files are refused from their
# header (never decoded), so one huge file in a pool cannot exhaust memory in a loader worker.
MAX_IMAGE_PIXELS = 100_000_000
EXIF_ORIENTATION = 0x0112
REPLACE_FIX = "replace or remove the file"


def _too_large(path: Path, what: str, size: str) -> UserError:
    return UserError(f"{what} is {size}, more than the {MAX_IMAGE_PIXELS // 1_000_000} megapixels segal decodes",
                     path=path, fix="downscale or tile it (e.g. to at most 8192×8192 pixels) before adding it")


def _open(path: Path, what: str) -> Image.Image:
    """Open ``path`` lazily (header only), turning every way it can fail into a :class:`UserError`."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UserError(f"{what} file is empty (0 bytes)", path=path,
                            fix="replace the file (an interrupted copy or download?) or remove it")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            image = Image.open(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise UserError(f"{what} file is a symlink to {os.readlink(path)}, which does not exist", path=path,
                            fix="restore the link's target or remove the link") from None
        raise UserError(f"{what} file is missing", path=path, fix="restore the file or remove it from the split") from None
    except PermissionError:
        raise UserError(f"cannot read the {what} file (permission denied)", path=path,
                        fix="make it readable (chmod a+r) or remove it") from None
    except IsADirectoryError:
        raise UserError(f"{what} path is a folder, not a file", path=path, fix="remove or rename the folder") from None
    except Image.DecompressionBombError as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)) / 1e6:.0f} megapixels" if pixels else "huge"
        raise _too_large(path, what, size) from None
    except OSError as exc:
        if exc.errno is None:  # Pillow's own "cannot identify image file"
            raise UserError(f"cannot decode {what} (corrupt or truncated, or not an image)", path=path,
                            fix=REPLACE_FIX) from None
        raise UserError(f"cannot read the {what} file ({exc.strerror})", path=path,
                        fix="check the file and the disk it is on, or remove it") from None
    except (SyntaxError, ValueError):
        raise UserError(f"cannot decode {what} (corrupt or truncated, or not an image)", path=path,
                        fix=REPLACE_FIX) from None
    if image.width * image.height > MAX_IMAGE_PIXELS:
        image.close()
        raise _too_large(path, what, f"{image.width}×{image.height}")
    return image


def _decode(image: Image.Image, path: Path, what: str) -> None:
    try:
        image.load()
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - whatever a decoder raises on a damaged file is the file's fault
        raise UserError(f"cannot decode {what} (corrupt or truncated)", path=path, fix=REPLACE_FIX) from None


def digest_file_stats(digest, paths) -> None:
    """Add each file's path, size and modification time (or ``missing``) to a hashlib ``digest``: what
    the caches use to notice changed data without reading it (``None`` paths, generated data, skip)."""
    for path in paths:
        if path is None:
            continue
        try:
            st = Path(path).stat()
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())


def sampled_indices(n: int, at_most: int = 64) -> list[int]:
    """Up to ``at_most`` evenly spaced indices of ``n`` items: stat-ing all of ImageNet would take
    longer than a cache saves."""
    return np.unique(np.linspace(0, n - 1, num=min(n, at_most)).astype(np.int64)).tolist() if n else []


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file of any mode as RGB ``uint8`` ``H×W×3`` (see the module docstring)."""
    with _open(path, "image") as image:
        _decode(image, Path(path), "image")
        if _orientation(image) != 1:
            image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I"):  # 16- or 32-bit grey: keep the high byte of 16-bit samples
            grey = (np.clip(np.asarray(image), 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=2)
        if image.mode == "RGB":
            return np.array(image)
        with warnings.catch_warnings():  # e.g. "palette images with transparency…": dropping alpha is intended
            warnings.simplefilter("ignore", UserWarning)
            return np.array(image.convert("RGB"))


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block costs the rotation, not the image
        return 1


def _colour_map_error(path: Path, colour: np.ndarray) -> UserError:
    count = len(np.unique(colour.reshape(-1, colour.shape[-1]), axis=0))
    return UserError(
        f"mask is a colour image ({count} colours): it looks like a colour-coded label map, not a map of class ids",
        path=path,
        fix="pass masks that store one class id per pixel (8-bit grey or palette PNGs), "
            "e.g. Cityscapes *_gtFine_labelIds.png, not *_color.png",
    )


def read_label_png(path: Path) -> np.ndarray:
    """Read a mask as the ``H×W`` ``uint8`` ids it stores (a palette PNG gives its indices)."""
    path = Path(path)
    with _open(path, "mask") as image:
        _decode(image, path, "mask")
        mode = image.mode
        if mode in ("P", "L", "1"):
            return np.array(image, dtype=np.uint8)
        if mode.startswith("I"):  # 16- or 32-bit grey
            ids = np.asarray(image)
            if ids.size and (ids.max() > 255 or ids.min() < 0):
                raise UserError("mask holds ids above 255", path=path, fix="store class ids as uint8")
            return ids.astype(np.uint8)
        if mode not in ("LA", "PA", "RGB", "RGBA"):
            raise UserError(f"mask is a {mode!r} image, not a map of class ids", path=path,
                            fix="save masks as 8-bit single-channel (grey or palette) PNGs of class ids")
        bands = np.asarray(image)
    colour, alpha = (bands[..., :-1], bands[..., -1]) if mode.endswith("A") else (bands, None)
    if colour.shape[-1] > 1 and (colour != colour[..., :1]).any():
        raise _colour_map_error(path, colour)
    if alpha is not None and (alpha != 255).any():
        raise UserError("mask has transparent pixels", path=path,
                        fix="save masks without an alpha channel, as single-channel PNGs of class ids")
    return np.ascontiguousarray(colour[..., 0])
