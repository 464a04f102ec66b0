"""One reader of frame files for training, evaluation, tools/check_dataset.py and the demo:
16-bit PNGs (which Detectron2's read_image turns white), grayscale and alpha read the same way
everywhere, and image files are told by their content, not their extension."""

import cv2
import numpy as np
import pytest
from detectron2.data.detection_utils import read_image
from PIL import Image

from temporal_roi_align.data import read_frame
from temporal_roi_align.utils.video_io import FolderFrames

from helpers import load_tool

check_dataset = load_tool("check_dataset")
GRADIENT = (np.arange(24 * 32, dtype=np.uint32).reshape(24, 32) * 85).astype(np.uint16)  # 0..65195


def test_16_bit_grayscale_keeps_its_high_byte(tmp_path):
    path = str(tmp_path / "frame.png")
    cv2.imwrite(path, GRADIENT)
    assert (read_image(path, "BGR") == 255).mean() > 0.9  # Detectron2's reader: white
    bgr = read_frame(path, "BGR")
    assert bgr.dtype == np.uint8 and bgr.shape == (24, 32, 3)
    assert (bgr == (GRADIENT >> 8)[..., None]).all()
    assert (bgr == cv2.imread(path)).all()  # as the demo's OpenCV used to read it
    assert (read_frame(path, "RGB") == bgr).all()


def test_16_bit_colour_grayscale_and_alpha_read_as_detectron2_does(tmp_path):
    colour = np.stack([GRADIENT, GRADIENT // 2, GRADIENT // 3], axis=-1)
    cv2.imwrite(str(tmp_path / "colour16.png"), colour)
    Image.fromarray((GRADIENT >> 8).astype(np.uint8)).save(tmp_path / "gray8.png")
    rgba = np.dstack([np.full((24, 32, 3), 90, np.uint8), (GRADIENT >> 8).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
    for name in ("colour16.png", "gray8.png", "rgba.png", "la.png"):
        path = str(tmp_path / name)
        assert (read_frame(path, "BGR") == read_image(path, "BGR")).all(), name
    assert (read_frame(str(tmp_path / "colour16.png"), "BGR") == (colour >> 8)).all()


def test_deeper_images_are_refused_naming_the_file(tmp_path):
    path = str(tmp_path / "deep.tif")
    Image.fromarray(np.full((4, 4), 70000, np.int32), "I").save(path)
    with pytest.raises(OSError, match=rf"{path}: cannot read image .*values outside 0\.\.65535"):
        read_frame(path, "BGR")
    with pytest.raises(FileNotFoundError, match="missing.png: image file does not exist"):
        read_frame(str(tmp_path / "missing.png"), "BGR")


def test_png_named_jpeg_is_read_by_content(tmp_path):
    path = str(tmp_path / "000000.JPEG")
    Image.fromarray((GRADIENT >> 8).astype(np.uint8)).save(path, "PNG")
    assert (read_frame(path, "BGR")[..., 0] == GRADIENT >> 8).all()


def test_the_demo_reads_folders_of_frames_alike(tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), GRADIENT)
    Image.new("RGB", (32, 24), (10, 20, 30)).save(tmp_path / "1.jpg")
    frames = FolderFrames(str(tmp_path))
    for i, f in enumerate(frames.files):
        assert (frames[i] == read_frame(f, "BGR")).all()
    assert (frames[0] == (GRADIENT >> 8)[..., None]).all()


def test_check_dataset_sees_16_bit_and_png_named_jpeg_frames(toy_copy, capsys):  # noqa: F811
    val = toy_copy / "Data" / "VID" / "val"
    first = val / sorted(p.name for p in val.iterdir())[0]
    gray16 = cv2.imread(str(first / "000000.JPEG"), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257
    cv2.imwrite(str(first / "000000.png"), gray16)
    (first / "000000.png").rename(first / "000000.JPEG")  # 16-bit PNG data named .JPEG
    for full in ([], ["--full"]):
        assert check_dataset.main(["toy_vid_val", *full]) == 0, full
        assert "toy_vid_val: 16 dataset dicts" in capsys.readouterr().out
    data = (first / "000000.JPEG").read_bytes()
    (first / "000000.JPEG").write_bytes(data[: len(data) // 2])  # a PNG cut short, named .JPEG
    assert check_dataset.main(["toy_vid_val"]) == 1
    assert f"truncated image (no end marker): 1\n      {first / '000000.JPEG'}" in capsys.readouterr().out
