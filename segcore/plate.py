"""A still background's plate: turntable masks completed where the network missed thin parts.

    plate = still_plate(len(frames), lambda i: (read(frames[i]), masks[i]))
    if plate is not None:                                  # None: the background moves
        masks = [plate.correct(read(f), m) for f, m in zip(frames, masks)]

On a turntable the camera and the background stand still while the subject turns: every
background pixel shows the same colour in all the frames where the subject does not cover
it. The per-pixel median over those frames (the *plate*) is a second opinion on each mask:

- **added**: pixels outside the mask that differ from the plate and hang on to the mask
  (a sleeve's tip the network dropped; a stand's thin legs turn too, and a caller with the
  network's classes keeps only the parts that are not a support:
  :meth:`Plate.correct`'s ``accept``, :class:`segcore.plate_pass.PlatePass`). A candidate pixel must
  differ by ``ADD_LEVEL`` (Lab units) *and* by at least half of the strongest difference
  around it, which puts the new edge where a soft (anti-aliased) rim is half subject, half
  background; a piece is added only if part of it lies beyond a band of ``BAND_PX`` pixels
  round the mask (a rim along the outline is not a missed part), and then only within that
  band's reach of its core.
- **removed**: pixels inside the mask that match the plate within ``KEEP_LEVEL`` over 5 x 5
  pixels (the mask leaked onto the background), where the plate was seen clear in at least
  ``REMOVE_SEEN`` of the frames: a part of the subject that looks the same in every frame
  (the stand's pole, its round base) is clear too rarely to be mistaken for the plate.

For the visual hull (:meth:`Plate.correct_pair`, a reconstruction workspace's
``hull_masks/``) a part is also added where it differs from the plate by only
``HULL_ADD_LEVEL`` (also the colour match that continues a part across the unknown ring
round a still one): a dark side on a dark backdrop, a pale leg on a pale floor. A hull keeps
only what every view keeps, so where such a piece is wrong (a shadow turning with the
subject) the other views carve it away; a part the masks miss is lost for good.

Parts of the subject that never move (a pole on the axis) are never clear: nothing is said
there. Whether the background stands still is measured, not assumed (:func:`still_share`):
a handheld ring's frames do not match any plate (0.17 on a rendered ring, 0.81 on the
bundled example's plain backdrop, 0.99-1.00 on turntables; ``STILL_SHARE`` 0.9), and then
the masks are left as they are.

Measured on the six held-out turntables of ``docs/results.md`` (24 frames each): with the
parts the network calls a support left out, mean IoU 0.978 and BF@2px 0.831 after the pass;
adding every turning part (stand included) gave 0.956 and 0.659, and no pass at all 0.977 and
0.829.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import InputError
from .geometry import resize_mask
from .options import PLATE_MODES

MODES = PLATE_MODES  # auto: when the background is found to stand still
# progress stages (reported as ``progress(stage, done, total)``) and their labels on screen
STAGES = {"plate": "Looking for a still background", "plate masks": "Completing masks"}
LONG_SIDE = 2048  # the plate's resolution cap (full resolution for most frames)
MAX_FRAMES = 48  # frames the plate is built from (evenly spaced over the sequence)
CLEAR_PX = 4  # a pixel is clear of the subject this far outside its (network) mask
MIN_SEEN = 3  # frames that must show a pixel clear for the plate to be known there
REMOVE_SEEN = 0.3  # share of the frames that must show it clear before the mask loses it
ADD_LEVEL = 20.0  # Lab distance from the plate: subject
# ... for the visual hull's masks (Plate.correct_pair): a hull keeps only what every view
# keeps, so a wrongly added piece (a shadow that turns with the subject) is carved away by
# the other views, a missed one is lost for good (docs/recon.md)
HULL_ADD_LEVEL = 12.0
KEEP_LEVEL = 6.0  # mean Lab distance (5 x 5) to the plate under which a masked pixel leaks
BAND_PX = 3  # a missed part must reach beyond this band round the mask
MIN_CORE = 10  # pixels of it beyond the band
STILL_LEVEL = 10.0  # Lab distance: a clear pixel matches the plate
STILL_SHARE = 0.9  # median share of matching clear pixels for "the background stands still"


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def clear_of(masks, radius: int = CLEAR_PX) -> np.ndarray:
    """(n, H, W) bool: where each frame shows no subject, ``radius`` pixels from its mask."""
    ker = _disk(radius)
    return np.array([cv2.dilate(m.astype(np.uint8), ker) == 0 for m in masks])


def plate_of(stack: np.ndarray, clear: np.ndarray, min_seen: int = MIN_SEEN):
    """The still background: per-pixel median of the frames that show it clear.

    ``stack`` (n, H, W[, C]); returns (plate float32 (H, W[, C]), seen count (H, W));
    the plate is 0 where fewer than ``min_seen`` frames show the pixel.
    """
    seen = clear.sum(axis=0)
    plate = np.zeros(stack.shape[1:], np.float32)
    rows = max(1, (1 << 22) // max(1, stack[0].size // stack.shape[1]) // len(stack))
    sel = clear if stack.ndim == 3 else clear[..., None]
    cnt = seen if stack.ndim == 3 else seen[..., None]
    for y in range(0, stack.shape[1], rows):  # in bands: float copies of the stack stay small
        # the median of the clear values: not-clear ones sort last (inf), then the middle one
        # (or two) of the first ``seen`` (nanmedian's result, several times faster)
        band = np.where(sel[:, y : y + rows], stack[:, y : y + rows].astype(np.float32), np.inf)
        band.sort(axis=0)
        c = np.broadcast_to(cnt[y : y + rows], band.shape[1:])
        lo = np.maximum(c - 1, 0) // 2
        hi = np.minimum(np.where(c % 2 == 0, c // 2, lo), band.shape[0] - 1)
        mid = 0.5 * (
            np.take_along_axis(band, lo[None], 0)[0] + np.take_along_axis(band, hi[None], 0)[0]
        )
        plate[y : y + rows] = np.where(c > 0, mid, 0)
    known = seen >= min_seen
    plate[~known] = 0
    return plate, seen


def _distance(lab: np.ndarray, plate: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Lab distance of a frame to the plate, lightly blurred; 0 where the plate is unknown."""
    d = np.sqrt(((lab.astype(np.float32) - plate) ** 2).sum(axis=-1))
    return cv2.GaussianBlur(np.where(known, d, 0), (3, 3), 0) * known


def still_share(labs, plate, clear, known) -> float:
    """Median over frames of the share of clear, known pixels that match the plate."""
    shares = []
    for lab, c in zip(labs, clear):
        sel = c & known
        if sel.sum() < 100:
            continue
        shares.append(float((_distance(lab, plate, known)[sel] < STILL_LEVEL).mean()))
    return float(np.median(shares)) if shares else 0.0


def added_parts(
    d: np.ndarray, mask: np.ndarray, known: np.ndarray, lab=None, level: float = ADD_LEVEL
) -> np.ndarray:
    """Pixels outside ``mask`` that differ from the plate (by ``level``) and belong to a
    missed part.

    Right round a mask that hardly changes from frame to frame (a pole on the axis) the
    plate is unknown (never clear): a missed part hangs on to the mask across that ring, and
    is continued through it where the frame's colour (``lab``) matches the part's.
    """
    cand = known & ~mask & (d > level) & (d >= 0.5 * cv2.dilate(d, np.ones((5, 5), np.uint8)))
    band = cv2.dilate(mask.astype(np.uint8), _disk(BAND_PX)) > 0
    far = cand & ~band
    if not far.any():
        return np.zeros_like(mask)
    ring = ~known & ~mask & (cv2.dilate(mask.astype(np.uint8), _disk(CLEAR_PX + 1)) > 0)
    n, comp = cv2.connectedComponents((cand | mask | ring).astype(np.uint8), connectivity=8)
    on_mask = np.zeros(n, bool)
    on_mask[np.unique(comp[mask])] = True
    ok = on_mask & (np.bincount(comp[far], minlength=n) >= MIN_CORE)
    ok[0] = False
    core = far & ok[comp]
    added = (cv2.dilate(core.astype(np.uint8), _disk(BAND_PX)) > 0) & cand
    if lab is not None and ring.any() and added.any():
        # the part's colour, from its pixels near the ring (fixed: the growth must not drift)
        labf = lab.astype(np.float32)
        box = (2 * CLEAR_PX + 5,) * 2
        w = cv2.blur(added.astype(np.float32), box)
        ref = cv2.blur(labf * added[..., None], box) / np.maximum(w, 1e-6)[..., None]
        like = ring & (w > 0) & (np.sqrt(((labf - ref) ** 2).sum(axis=-1)) < level)
        for _ in range(CLEAR_PX + 2):  # continue the part through the ring, a pixel a step
            grow = (
                like & ~added & (cv2.dilate(added.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
            )
            if not grow.any():
                break
            added |= grow
    return added


def leaked(d: np.ndarray, mask: np.ndarray, trusted: np.ndarray) -> np.ndarray:
    """Pixels inside ``mask`` that show the plate (where it is ``trusted``)."""
    return mask & trusted & (cv2.blur(d, (5, 5)) < KEEP_LEVEL)


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A frame at ``size`` (w, h), area-averaged."""
    return img if img.shape[1::-1] == size else cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else a one-line :class:`InputError`."""
    if mode not in MODES:
        raise InputError(f"plate {mode!r}: choose one of {', '.join(MODES)}")
    return mode


@dataclass
class Plate:
    """A still background, ready to correct masks frame by frame (:func:`still_plate`)."""

    size: tuple[int, int]  # (w, h) the plate is kept at (frames are fitted to it)
    lab: np.ndarray  # float32 (h, w, 3) the background's Lab colours (0 where unknown)
    known: np.ndarray  # bool (h, w): seen clear in at least MIN_SEEN frames
    trusted: np.ndarray  # bool (h, w): seen clear often enough to remove a mask's leak
    still: float  # :func:`still_share`
    frames: int  # how many frames it was built from
    corrected: int = 0  # frames passed to :meth:`correct` (or correct_pair) so far
    changed: int = 0  # of those, how many changed
    added_px: int = 0  # pixels (at ``size``) added and removed over all of them
    removed_px: int = 0
    hull_changed: int = 0  # frames whose hull mask (correct_pair) holds more than the mask
    hull_added_px: int = 0  # pixels (at ``size``) only the hull masks have

    def changes(
        self, bgr: np.ndarray, mask: np.ndarray, levels: tuple[float, ...] = (ADD_LEVEL,)
    ) -> tuple[np.ndarray, ...]:
        """(added at each of ``levels``..., removed): bool maps at ``size`` for one frame
        (BGR uint8) and its mask."""
        lab = cv2.cvtColor(_fit(bgr, self.size), cv2.COLOR_BGR2LAB)
        m = resize_mask(mask, self.size)
        d = _distance(lab, self.lab, self.known)
        added = [added_parts(d, m, self.known, lab, level) for level in levels]
        return (*added, leaked(d, m, self.trusted))

    def correct(self, bgr: np.ndarray, mask: np.ndarray, accept=None) -> np.ndarray:
        """``mask`` (bool, the frame's size) completed: missed parts added, leaks removed.
        ``accept(added)``, given the parts to add (bool, at ``size``), returns those to add."""
        add, rem = self.changes(bgr, mask)
        if accept is not None and add.any():
            add = add & accept(add)
        return self._apply(mask, add, rem)

    def correct_pair(
        self, bgr: np.ndarray, mask: np.ndarray, hull_level: float = HULL_ADD_LEVEL
    ) -> tuple[np.ndarray, np.ndarray]:
        """(:meth:`correct`'s mask, the visual hull's): the hull's also takes the parts that
        differ from the plate by ``hull_level`` (never less than the mask)."""
        add, add_hull, rem = self.changes(bgr, mask, (ADD_LEVEL, hull_level))
        out = self._apply(mask, add, rem)
        extra = add_hull & ~add & ~rem
        if not extra.any():
            return out, out
        self.hull_changed += 1
        self.hull_added_px += int(extra.sum())
        return out, out | self._fit_to(mask, extra)

    def _fit_to(self, mask: np.ndarray, part: np.ndarray) -> np.ndarray:
        """``part`` (bool, at ``size``) at ``mask``'s size."""
        if mask.shape[::-1] == self.size:
            return part
        w, h = mask.shape[1], mask.shape[0]
        return cv2.resize(part.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5

    def _apply(self, mask: np.ndarray, add: np.ndarray, rem: np.ndarray) -> np.ndarray:
        self.corrected += 1
        if not (add.any() or rem.any()):
            return mask
        self.changed += 1
        self.added_px += int(add.sum())
        self.removed_px += int(rem.sum())
        return (mask | self._fit_to(mask, add)) & ~self._fit_to(mask, rem)

    def summary(self) -> dict:
        area = max(1, self.corrected * self.size[0] * self.size[1])
        return {
            "still_share": round(self.still, 3),
            "plate_frames": self.frames,
            "frames_changed": self.changed,
            "added_share": round(self.added_px / area, 5),
            "removed_share": round(self.removed_px / area, 5),
            "hull_frames_changed": self.hull_changed,
            "hull_added_share": round(self.hull_added_px / area, 5),
        }


def still_plate(
    n: int,
    load,
    force: bool = False,
    progress=None,
    why: list[str] | None = None,
    artist: Iterable[int] = (),
) -> Plate | None:
    """The still background of a sequence of ``n`` frames, or None where there is none.

    ``load(i)`` returns frame ``i`` (BGR uint8) and its mask (bool); at most ``MAX_FRAMES``
    evenly spaced frames are loaded, fitted within ``LONG_SIDE`` pixels, so memory stays
    bounded for long sequences and big photos. None if fewer than 6 frames, or if the
    background does not stand still (unless ``force``). ``progress("plate", done, total)``
    after each frame loaded. ``why``, a list, receives the reason when it returns None.

    ``artist``: frames whose masks a person drew (``segcore adapt``'s corrections); always
    loaded, and where one of them shows a pixel clear the plate is known and trusted there
    even if no other frame does: a part the network keeps in every frame (a stand's pole on
    the axis) and the artist removed is removed from every frame where it looks the same.
    """
    if n < 6:
        if why is not None:
            why.append(f"{n} frames: the still-background pass needs 6 or more")
        return None
    labs, small = [], []
    size = None
    artist = sorted({int(i) for i in artist if 0 <= int(i) < n})
    sample = np.linspace(0, n - 1, min(n, MAX_FRAMES)).round().astype(int)
    sample = np.unique(np.concatenate([sample, np.array(artist, int)]))
    for k, i in enumerate(sample):
        f, m = load(int(i))
        if progress is not None:
            progress("plate", k + 1, len(sample))
        if size is None:
            h, w = f.shape[:2]
            s = min(1.0, LONG_SIDE / max(h, w))
            size = (max(1, round(w * s)), max(1, round(h * s)))
        labs.append(cv2.cvtColor(_fit(f, size), cv2.COLOR_BGR2LAB))
        small.append(resize_mask(m, size))
    k = len(labs)
    labs = np.array(labs)
    clear = clear_of(small)
    plate, seen = plate_of(labs, clear)
    drawn = [j for j, i in enumerate(sample) if int(i) in artist]
    by_artist = np.zeros(clear.shape[1:], bool)
    if drawn:  # where only the artist's frames show the background, their colours
        theirs, by = plate_of(labs[drawn], clear[drawn], 1)
        by_artist = by > 0
        only = by_artist & (seen < MIN_SEEN)
        plate[only] = theirs[only]
    known = (seen >= MIN_SEEN) | by_artist
    still = still_share(labs, plate, clear, known)
    if still < STILL_SHARE and not force:
        if why is not None:
            why.append(
                f"the background moves (a camera ring, or a hand-held camera): {still:.0%} of "
                "it matches from frame to frame, under a turntable's "
                f"{STILL_SHARE:.0%}; --plate on forces the pass"
            )
        return None
    trusted = (seen >= max(MIN_SEEN, REMOVE_SEEN * k)) | by_artist
    return Plate(size, plate, known, trusted, still, k)
