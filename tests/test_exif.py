"""The focal length in pixels from a frame's EXIF (segcore.exif), as reconstruct reads it."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from segcore.exif import (
    FILM_DIAGONAL_MM,
    exif_block,
    exif_focal,
    exif_tags,
    known_focal,
    with_exif,
)


def jpeg(path, width=720, height=960, block=None):
    img = np.full((height, width, 3), 120, np.uint8)
    cv2.circle(img, (width // 2, height // 2), min(width, height) // 4, (20, 90, 200), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    data = buf.tobytes()
    path.write_bytes(with_exif(data, block) if block else data)
    return path, img


def test_focal_from_focal_length_and_focal_plane_resolution(tmp_path):
    # a 33 mm lens on a 36 mm wide sensor, 720 pixels across: 660 px
    path, img = jpeg(tmp_path / "f.jpg", block=exif_block(33.0, 36.0, 720, 960))
    got = exif_focal(path)
    assert got.pixels == pytest.approx(660.0, rel=1e-4)
    assert "FocalPlaneXResolution" in got.source
    # the EXIF block leaves the pixels alone
    assert np.array_equal(cv2.imread(str(path)), cv2.imdecode(
        np.frombuffer(cv2.imencode(".jpg", img)[1], np.uint8), cv2.IMREAD_COLOR
    ))  # fmt: skip


def test_a_resized_frame_scales_the_focal_plane_resolution(tmp_path):
    """The camera wrote 1440 px across (PixelXDimension); the frame was halved since."""
    path, _ = jpeg(tmp_path / "half.jpg", block=exif_block(50.0, 36.0, 1440, 1920))
    assert exif_focal(path).pixels == pytest.approx(50 / 36 * 720, rel=1e-4)


def test_focal_from_the_35mm_equivalent_alone(tmp_path):
    block = exif_block(33.0, 36.0, 720, 960)
    tags = exif_tags(b"\xff\xd8" + block)
    f35 = tags[0xA405][0]
    # the same frame with FocalLength removed: only FocalLengthIn35mmFilm is left
    stripped = block.replace(b"\x0a\x92\x05\x00", b"\x0a\x92\x09\x00")  # type 9: not read
    path, _ = jpeg(tmp_path / "f35.jpg", block=stripped)
    got = exif_focal(path)
    assert got.source == "EXIF FocalLengthIn35mmFilm"
    assert got.pixels == pytest.approx(f35 / FILM_DIAGONAL_MM * math.hypot(720, 960))
    assert got.pixels == pytest.approx(660.0, rel=0.02)  # a whole number of mm: about 1 % off


def test_no_exif_no_focal_and_a_given_focal_wins(tmp_path):
    plain, _ = jpeg(tmp_path / "plain.jpg")
    assert exif_focal(plain) is None
    assert known_focal(plain, None) == (None, None)
    tagged, _ = jpeg(tmp_path / "tagged.jpg", block=exif_block(33.0, 36.0, 720, 960))
    assert known_focal(tagged, 800.0) == (800.0, "given")
    focal, source = known_focal(tagged, None)
    assert focal == pytest.approx(660.0) and source.startswith("EXIF")
    png = tmp_path / "frame.png"
    cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    assert exif_focal(png) is None


def test_a_broken_exif_block_reads_as_none(tmp_path):
    block = bytearray(exif_block(33.0, 36.0, 720, 960))
    block[20:24] = b"\xff\xff\xff\x7f"  # IFD0 offset far past the end
    path, _ = jpeg(tmp_path / "broken.jpg", block=bytes(block))
    assert exif_focal(path) is None
    assert cv2.imread(str(path)) is not None


def test_pycolmap_reads_the_same_focal(tmp_path):
    """COLMAP's own EXIF reading (its incremental and global mappers use it as the prior)
    agrees with ours on the block the generator writes."""
    pycolmap = pytest.importorskip("pycolmap")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        jpeg(images / f"{i}.jpg", block=exif_block(33.0, 36.0, 720, 960))
    db = tmp_path / "database.db"
    pycolmap.Database.open(db).close()
    pycolmap.import_images(db, images, pycolmap.CameraMode.SINGLE, ["0.jpg", "1.jpg"])
    with pycolmap.Database.open(db) as d:
        cam = d.read_all_cameras()[0]
    assert cam.has_prior_focal_length
    assert cam.focal_length == pytest.approx(660.0, rel=0.06)
