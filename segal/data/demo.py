"""The built-in demo: generated street scenes, deterministic, no files, no download.

Each image is drawn on demand from a per-index seed: sky above a random horizon, buildings of
varying height, width and colour with window texture, a road with lane marks, a sidewalk, trees,
and rarer cars, poles and people.  Colours are jittered and noise is added, so the task is
learnable but not trivial, and rare classes give active learning something to find.
"""

from __future__ import annotations

import cv2
import numpy as np

from segal.data.base import DATASETS, ClassSet, Dataset
from segal.errors import UserError

CLASSES = ClassSet(
    names=("sky", "building", "road", "sidewalk", "vegetation", "car", "pole", "person"),
    colors=((70, 130, 180), (70, 70, 70), (128, 64, 128), (244, 35, 232), (107, 142, 35), (0, 0, 142),
            (153, 153, 153), (220, 20, 60)),
)
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, CAR, POLE, PERSON = range(8)
_SPLIT_SALT = {"train": 11, "val": 23, "test": 23}


def _jitter(rng: np.random.Generator, color, amount: int = 30) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)
    return r, g, b


def render_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene; returns (RGB image, mask of class ids)."""
    h, w = height, width
    image: np.ndarray = np.zeros((h, w, 3), np.float32)
    mask = np.zeros((h, w), np.uint8)

    def paint(region: np.ndarray, cls: int, color, texture: float = 0.0) -> None:
        mask[region] = cls
        base = np.asarray(color, np.float32)
        if texture:
            noise = rng.normal(0, texture, size=(h, w, 1)).astype(np.float32)
            image[region] = base + noise[region]
        else:
            image[region] = base

    yy, xx = np.mgrid[0:h, 0:w]
    horizon = int(h * rng.uniform(0.35, 0.55))
    sky_top, sky_bottom = np.array(_jitter(rng, (90, 150, 220))), np.array(_jitter(rng, (180, 210, 235)))
    sky = yy < horizon
    mask[sky] = SKY
    t = (yy / max(horizon, 1))[..., None]
    image[:] = np.where(sky[..., None], sky_top * (1 - t) + sky_bottom * t, image)

    # buildings along the horizon, with window texture
    x = 0
    while x < w:
        bw = int(rng.integers(w // 8, w // 3))
        top = int(rng.integers(max(1, horizon // 6), max(2, horizon - 2)))
        region = (yy >= top) & (yy < horizon) & (xx >= x) & (xx < x + bw)
        if rng.random() < 0.85:
            paint(region, BUILDING, _jitter(rng, (110, 100, 95), 40), texture=6)
            windows = region & ((yy - top) % 5 < 2) & ((xx - x) % 6 < 3)
            image[windows] *= 0.6
        x += bw

    # road and sidewalk below the horizon
    sidewalk_end = horizon + int((h - horizon) * rng.uniform(0.15, 0.3))
    paint((yy >= horizon) & (yy < sidewalk_end), SIDEWALK, _jitter(rng, (200, 170, 190)), texture=8)
    road = yy >= sidewalk_end
    paint(road, ROAD, _jitter(rng, (110, 90, 115), 15), texture=5)
    lane_y = sidewalk_end + (h - sidewalk_end) // 2
    marks = road & (np.abs(yy - lane_y) < max(1, h // 48)) & ((xx // max(2, w // 12)) % 2 == 0)
    image[marks] = (235, 235, 235)

    # trees: textured blobs standing on the sidewalk
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(horizon - h // 6, sidewalk_end))
        rx, ry = int(rng.integers(w // 20 + 2, w // 8 + 3)), int(rng.integers(h // 10 + 2, h // 5 + 3))
        blob = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        paint(blob, VEGETATION, _jitter(rng, (60, 120, 40), 25), texture=18)

    # poles (rare, narrow)
    for _ in range(int(rng.poisson(0.6))):
        px = int(rng.integers(0, w))
        top = int(rng.integers(h // 8, horizon))
        paint((xx >= px) & (xx < px + max(2, w // 24)) & (yy >= top) & (yy < sidewalk_end), POLE,
              _jitter(rng, (235, 200, 40), 20))

    # cars on the road: body plus darker windows
    for _ in range(int(rng.poisson(1.2))):
        cw = int(rng.integers(w // 8, w // 4))
        ch = max(3, int(cw * rng.uniform(0.4, 0.6)))
        cx = int(rng.integers(-cw // 2, w - cw // 2))
        cy = int(rng.integers(sidewalk_end, max(sidewalk_end + 1, h - ch // 2)))
        body = (xx >= cx) & (xx < cx + cw) & (yy >= cy - ch) & (yy < cy)
        paint(body, CAR, _jitter(rng, (30, 40, 150), 60), texture=4)
        glass = body & (yy < cy - ch // 2) & (xx > cx + cw // 5) & (xx < cx + 4 * cw // 5)
        image[glass] = (40, 50, 70)

    # people (rarest): a head and a body on the sidewalk
    for _ in range(int(rng.poisson(0.4))):
        px = int(rng.integers(0, w))
        feet = int(rng.integers(horizon + 1, sidewalk_end + 2))
        ph = max(6, h // 4)
        half = max(2, w // 40)
        body = (np.abs(xx - px) <= half) & (yy >= feet - ph) & (yy < feet)
        head = (xx - px) ** 2 + (yy - (feet - ph - half)) ** 2 <= (half + 1) ** 2
        paint(body | head, PERSON, _jitter(rng, (200, 60, 60), 40))

    # global lighting and sensor noise
    image = image * rng.uniform(0.75, 1.2) + rng.normal(0, 6, size=image.shape)
    image = cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (3, 3), 0)
    return image, mask


class DemoScenes(Dataset):
    """Generated scenes; item ``i`` of a split is the same on every machine and every call."""

    task = "segmentation"
    classes = CLASSES

    def __init__(self, count: int, size: tuple[int, int], seed: int, split: str):
        self.count = count
        self.size = size
        self.seed = seed
        self.salt = _SPLIT_SALT[split]
        self.split = split

    def __len__(self) -> int:
        return self.count

    def image_id(self, index: int) -> str:
        return f"demo_{'train' if self.split == 'train' else 'val'}_{index:05d}"

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.count:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.salt, index])
        return render_scene(rng, *self.size)

    def load_image(self, index: int) -> np.ndarray:
        return self._render(index)[0]

    def load_target(self, index: int) -> np.ndarray:
        return self._render(index)[1]

    def __getitem__(self, index: int):
        image, mask = self._render(index)
        return image, mask, self.image_id(index)


@DATASETS.register("demo")
def build(root: str | None, split: str, size: list[int] | tuple[int, int] = (64, 96), n_train: int = 240,
          n_test: int = 60, seed: int = 0) -> DemoScenes:
    if split not in _SPLIT_SALT:
        raise UserError(f"the demo has no split {split!r}", fix="use train, val or test")
    if len(size) != 2 or min(size) < 16:
        raise UserError(f"demo size {list(size)} is too small", fix="use [H, W] with both at least 16")
    if n_train <= 0 or n_test <= 0:
        raise UserError("demo n_train and n_test must be positive", fix="e.g. n_train: 240, n_test: 60")
    return DemoScenes(n_train if split == "train" else n_test, (int(size[0]), int(size[1])), seed, split)
