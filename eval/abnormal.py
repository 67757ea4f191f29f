"""Abnormal ratio without people: a rule-based detector on object states parsed from the pixels.

The paper's abnormal ratio was judged by people (a video is abnormal if it visibly breaks physics).
Here each generated combinatorial video is parsed into per-frame states of its colour classes
(the scene's palette: red user ball, gray dynamic objects, black static objects, ...; each
pixel to its colour, or for a blend of two colours at an edge, to the one covering more of it),
and each rule below compares them with the first frame, which is the given condition frame.
PHYRE-like scenes are 2D and walled: objects never overlap (once pushed apart, in scenes that
start overlapping), never leave the view, never change colour, size or shape, and start at
rest, so the dynamic objects' energy can only fall.

Rules (thresholds in `eval.config.AbnormalConfig`):
- `stray_colour`: more than `stray_pixel_frac` of a frame's pixels are explained by no palette
  colour, nor by a blend of two (blurred edges), within `colour_tol` -> a colour change.
- `area`: a colour class's visible area differs from frame 0 by more than `area_change` times
  the area of its smallest object (component) in frame 0 and more than `area_class_frac` of the
  class's area (thin bars rasterised at other angles change area by up to ~13% at 128 px) -> an
  object appeared, vanished, changed size or colour (area moves between classes), or objects
  overlap (interpenetration hides area: a 2D scene has none). A static class's area does not
  count where a moving object covered it at frame 0 (scenes that start overlapping, as the
  authors' do, reveal it as they part).
- `count`: a colour class has more components than in frame 0 and than it has objects -> an
  object appeared, or one object passing through another cut it in two (fewer is allowed:
  touching objects merge; objects that start together may part).
- `shape`: a class of one object that is one component in frame 0 and in frame t changed the
  eigenvalues of its pixel covariance (rotation-invariant) by more than `shape_change`, relative.
- `energy`: a dynamic colour class's centre of mass has g y + |v|^2 / 2 more than
  `energy_gain` x (its fall so far) + `energy_gain_abs_px` x g above its start (at rest): energy
  from nowhere (a launched object could in principle gain it from a heavier one; with PHYRE's
  restitution 0.2 this margin is not reached in ground truth).
- `floating`: a dynamic component stays at rest (centroid moves < `rest_px` per frame) for
  `float_frames` frames while touching nothing (no other object nor the border within 2 px).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from eval.config import AbnormalConfig

RULES = ("stray_colour", "area", "count", "shape", "energy", "floating")
WHITE = np.array([255.0, 255.0, 255.0])
SUPPORT_PX = 2  # a component within this many pixels of another object or the border is supported


@dataclass
class Palette:
    """The colours of a scene's objects, which of them move, and how many objects each has."""

    colours: np.ndarray  # (K, 3) float
    dynamic: np.ndarray  # (K,) bool
    objects: np.ndarray  # (K,) int: objects of each colour (0: unknown, count from frame 0 only)

    @classmethod
    def from_objects(cls, objects: list[dict]) -> Palette:
        """The palette of a sample's `objects` column (a colour is dynamic if any object of it is)."""
        table: dict[tuple[int, ...], list] = {}
        for obj in objects:
            entry = table.setdefault(tuple(int(c) for c in obj["colour"]), [False, 0])
            entry[0] |= bool(obj.get("dynamic", True))
            entry[1] += 1
        keys = sorted(table)
        return cls(
            np.array(keys, np.float64),
            np.array([table[k][0] for k in keys]),
            np.array([table[k][1] for k in keys]),
        )


def classify(
    frames: np.ndarray, palette: Palette, colour_tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel class (T, H, W) int: -1 background, k palette colour k; and a stray mask.

    A pixel is explained by the nearest of {white, palette colours} or of the segments between
    two of them (blends at anti-aliased or blurred edges); a blend belongs to the colour that
    covers more of it, never to a third colour that happens to lie nearer (a gray-black edge
    is not red). It is stray when farther than `colour_tol` from every colour and segment.
    Exact palette pixels (all of a hard-edged ground-truth video) skip the distance computations.
    """
    px = frames.reshape(-1, 3)
    anchors = np.vstack([WHITE, palette.colours]).astype(np.float32)  # (K+1, 3)
    codes = px.astype(np.int32) @ np.array([65536, 256, 1], np.int32)
    anchor_codes = anchors.astype(np.int32) @ np.array([65536, 256, 1], np.int32)
    label = np.full(len(px), -2, np.int64)
    for k, code in enumerate(anchor_codes):
        label[codes == code] = k - 1
    stray = np.zeros(len(px), bool)
    rest = np.nonzero(label == -2)[0]
    if len(rest):
        p = px[rest].astype(np.float32)
        d2 = ((p[:, None, :] - anchors[None]) ** 2).sum(-1)  # (P, K+1)
        best_label = d2.argmin(axis=1) - 1
        best = np.sqrt(d2.min(axis=1))
        for i in range(len(anchors)):
            for j in range(i + 1, len(anchors)):
                seg = anchors[j] - anchors[i]
                t = np.clip(((p - anchors[i]) @ seg) / (seg @ seg), 0.0, 1.0)
                dist = np.linalg.norm(p - (anchors[i] + t[:, None] * seg), axis=1)
                closer = dist < best
                best = np.where(closer, dist, best)
                best_label = np.where(closer, np.where(t < 0.5, i, j) - 1, best_label)
        label[rest] = best_label
        stray[rest] = best > colour_tol
    shape = frames.shape[:3]
    return label.reshape(shape), stray.reshape(shape)


@dataclass
class ClassStates:
    """Per-frame states of one colour class, parsed from a video."""

    area: np.ndarray  # (T,) pixels
    centroid: np.ndarray  # (T, 2) pixels (x right, y up), NaN if absent
    eig: np.ndarray  # (T, 2) sorted eigenvalues of the pixel covariance
    count: np.ndarray  # (T,) components of at least min_area_px
    components: list[list[tuple[np.ndarray, float, bool]]]  # per frame: (centroid, area, supported)


def _moments(mask: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return np.full(2, np.nan), np.full(2, np.nan)
    xy = np.stack([cols + 0.5, height - rows - 0.5], axis=1).astype(np.float64)
    eig = (
        np.sort(np.linalg.eigvalsh(np.cov(xy.T, bias=True).reshape(2, 2)))
        if len(xy) > 1
        else np.zeros(2)
    )
    return xy.mean(axis=0), eig


def parse_classes(label: np.ndarray, num_classes: int, min_area_px: int) -> list[ClassStates]:
    """States of every palette class in every frame of a classified video (T, H, W)."""
    num_frames, height, _ = label.shape
    occupied = label >= 0
    # "Supported": within SUPPORT_PX of another class's pixels or the border.
    structure = np.ones((3, 3), bool)
    out = []
    for k in range(num_classes):
        mask = label == k
        others = occupied & ~mask
        near_others = np.stack([ndimage.binary_dilation(o, structure, SUPPORT_PX) for o in others])
        area = mask.sum(axis=(1, 2)).astype(np.float64)
        centroid, eig, count, comps = (
            np.full((num_frames, 2), np.nan),
            np.full((num_frames, 2), np.nan),
            np.zeros(num_frames, int),
            [],
        )
        for t in range(num_frames):
            centroid[t], eig[t] = _moments(mask[t], height)
            labels, n = ndimage.label(mask[t], structure)
            frame_comps = []
            for c in range(1, n + 1):
                comp = labels == c
                a = float(comp.sum())
                if a < min_area_px:
                    continue
                rows, cols = np.nonzero(comp)
                border = (
                    rows.max() >= height - 1 - SUPPORT_PX
                    or cols.min() <= SUPPORT_PX
                    or cols.max() >= comp.shape[1] - 1 - SUPPORT_PX
                )
                supported = bool(border or (near_others[t] & comp).any())
                frame_comps.append(
                    (np.array([cols.mean() + 0.5, height - rows.mean() - 0.5]), a, supported)
                )
            count[t] = len(frame_comps)
            comps.append(frame_comps)
        out.append(ClassStates(area, centroid, eig, count, comps))
    return out


def detect(
    frames: np.ndarray, palette: Palette, cfg: AbnormalConfig, gravity_px: float, start: int = 1
) -> dict[str, bool]:
    """Which rules one video (T, H, W, 3) uint8 breaks, checking frames from `start` on.

    `gravity_px`: gravity in pixels per frame^2 (g * pixels-per-metre * frame_dt^2).
    """
    label, stray = classify(frames, palette, cfg.colour_tol)
    states = parse_classes(label, len(palette.colours), cfg.min_area_px)
    pixels = frames.shape[1] * frames.shape[2]
    flags = dict.fromkeys(RULES, False)
    flags["stray_colour"] = bool(
        (stray[start:].sum(axis=(1, 2)) > cfg.stray_pixel_frac * pixels).any()
    )
    moving_at_0 = np.isin(label[0], np.flatnonzero(palette.dynamic))
    for k, (s, objects) in enumerate(zip(states, palette.objects)):
        if s.area[0] < cfg.min_area_px:
            flags["count"] |= bool((s.count[start:] > 0).any())  # a class absent at frame 0 appears
            continue
        smallest = min((a for _, a, _ in s.components[0]), default=s.area[0])
        tol = max(cfg.area_change * smallest, cfg.area_class_frac * s.area[0])
        area = s.area
        if not palette.dynamic[k]:
            # Static objects never move: they gain area only where a moving object covered them
            # at frame 0 and has left (scenes that start with objects overlapping).
            area = area - ((label == k) & moving_at_0).sum(axis=(1, 2))
        flags["area"] |= bool((np.abs(area[start:] - area[0]) > tol).any())
        # Objects touching or overlapping at frame 0 are one component there and may part.
        flags["count"] |= bool((s.count[start:] > max(s.count[0], objects)).any())
        if objects > 1:
            continue  # several objects of one colour can merge and part: no single shape
        single = (s.count == 1) & (s.count[0] == 1)
        rel = np.abs(s.eig - s.eig[0]).max(axis=1) / max(s.eig[0].max(), 1e-9)
        flags["shape"] |= bool((single[start:] & (rel[start:] > cfg.shape_change)).any())
    flags["energy"] = _energy_gain(states, palette, cfg, gravity_px, start)
    flags["floating"] = _floating(states, palette, cfg, start)
    return flags


def _energy_gain(states, palette: Palette, cfg: AbnormalConfig, g: float, start: int) -> bool:
    """Specific energy g y + |v|^2 / 2 of each dynamic class's centre of mass above its start.

    Objects start at rest, so energy can only move between objects through contacts; a class
    whose centre of mass ends up with more specific energy than it started with by a margin
    (`energy_gain` of its fall so far plus `energy_gain_abs_px` of height) gained it from nowhere.
    """
    for s, dynamic in zip(states, palette.dynamic):
        if not dynamic or s.area[0] < cfg.min_area_px:
            continue
        com = s.centroid  # (T, 2) pixels, y up; NaN where the class is absent
        vel = np.gradient(com, axis=0)  # pixels / frame
        energy = g * com[:, 1] + 0.5 * (vel**2).sum(axis=1)
        fallen = np.maximum(com[0, 1] - np.fmin.accumulate(com[:, 1]), 0.0)  # lowest point so far
        allowed = energy[0] + cfg.energy_gain * g * fallen + cfg.energy_gain_abs_px * g
        if (energy[start:] > allowed[start:]).any():  # NaN compares False: absence is `area`'s job
            return True
    return False


def _floating(states, palette: Palette, cfg: AbnormalConfig, start: int) -> bool:
    """A dynamic component at rest with nothing under or beside it for `float_frames` frames."""
    run = 0
    num_frames = len(states[0].area)
    for t in range(max(start, 1), num_frames):
        hovering = False
        for s, d in zip(states, palette.dynamic):
            if not d:
                continue
            prev = s.components[t - 1]
            for centre, area, supported in s.components[t]:
                if supported:
                    continue
                hovering |= any(
                    np.linalg.norm(centre - c0) < cfg.rest_px and abs(area - a0) < 0.2 * a0
                    for c0, a0, _ in prev
                )
        run = run + 1 if hovering else 0
        if run >= cfg.float_frames:
            return True
    return False


def abnormal_ratio(flags: list[dict[str, bool]]) -> dict[str, float]:
    """Fraction of videos breaking any rule (`abnormal`) and each rule."""
    if not flags:
        return {}
    out = {"abnormal": float(np.mean([any(f.values()) for f in flags]))}
    for rule in RULES:
        out[f"abnormal_{rule}"] = float(np.mean([f[rule] for f in flags]))
    return out
