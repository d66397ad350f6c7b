"""The resize node: crop, scale, stretch / letterbox / cover, every picture buffer and the keypoints moved alike."""
from __future__ import annotations

import av
import numpy as np
import pytest

from stream.nodes.resize import Geometry
from test_runtime import run_graph


@pytest.mark.parametrize("fit", ["stretch", "letterbox", "cover"])
def test_geometry_moves_pixels_masks_and_keypoints_together(fit):
    h, w = 120, 200
    image = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.float32)
    labels = np.zeros((h, w), np.int32)
    points = np.array([[150.0, 40.0, 0.0, 1.0], [60.0, 90.0, 0.0, 0.5]], np.float32)
    for x, y in points[:, :2].astype(int):
        image[y - 3:y + 4, x - 3:x + 4] = 255
        mask[y - 3:y + 4, x - 3:x + 4] = 1
        labels[y - 3:y + 4, x - 3:x + 4] = 7
    g = Geometry.of((h, w), (), (64, 64), 1.0, fit)
    out_image, out_mask, out_labels = g.apply(image), g.apply(mask), g.apply(labels)
    moved = g.points(points)
    assert out_image.shape == (64, 64, 3) and out_mask.shape == out_labels.shape == (64, 64)
    assert set(np.unique(out_labels)) <= {0, 7}                    # labels are not blended
    np.testing.assert_array_equal(moved[:, 2:], points[:, 2:])     # visibility and depth kept
    for x, y in moved[:, :2]:
        if 0 <= x < 64 and 0 <= y < 64:                            # cover may crop a point away
            iy, ix = int(round(y)), int(round(x))
            assert out_image[iy, ix].max() > 100 and out_mask[iy, ix] > 0.4 and out_labels[iy, ix] == 7
    bright = out_image.max(-1) > 100
    assert (bright != (out_mask > 0.4)).sum() <= 4                 # the same pixels, up to rounding at edges


def test_geometry_sizes_crop_scale_and_one_side():
    g = Geometry.of((480, 640), (), (256, 256), 1.0, "cover")
    assert g.scaled == (256, 341) and g.offset == (0, -42)            # the overflow cropped evenly
    g = Geometry.of((480, 640), (), (256, 256), 1.0, "letterbox")
    assert g.scaled == (192, 256) and g.offset == (32, 0)             # bars top and bottom
    assert Geometry.of((480, 640), (), (0, 0), 0.5, "cover").size == (240, 320)
    assert Geometry.of((480, 640), (), (0, 320), 1.0, "cover").size == (240, 320)   # height from the aspect
    g = Geometry.of((480, 640), (100, 40, 200, 100), (0, 0), 2.0, "cover")
    assert g.crop == (40, 100, 100, 200) and g.size == (200, 400)
    frame = np.arange(480 * 640, dtype=np.float32).reshape(480, 640)
    np.testing.assert_array_equal(Geometry.of((480, 640), (100, 40, 200, 100), (0, 0), 1.0, "stretch").apply(frame),
                                  frame[40:140, 100:300])


def test_resize_node_in_a_graph_keeps_the_mask_on_the_person(tmp_path):
    """Mannequin (image + mask) -> resize (letterbox, 2x down) -> composite over white: a mask that moved
    with the image leaves no black of the mannequin's background around the body, and the bars white."""
    out = tmp_path / "small.mp4"
    code, report, err = run_graph(tmp_path, f"""
        nodes:
          - {{name: source, kind: mannequin, params: {{width: 160, height: 120, frames: 3, motion: walk}}}}
          - {{name: small, kind: resize, params: {{width: 96, height: 96, fit: letterbox}}}}
          - {{name: comp, kind: composite, params: {{background: color, color: [255, 255, 255]}}}}
          - {{name: sink, kind: mp4, params: {{path: {out}, crf: 5}}}}
        edges: [source.video -> small.in, small.out -> comp.in, comp.out -> sink.in]
    """)
    assert code == 0, err
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (96, 96, 3)
    f = frames[0].astype(int)
    assert f[:10].min() > 230 and f[-10:].min() > 230                # the bars: mask 0 there, so white
    dark = f.max(-1) < 40                                            # the mannequin's black background
    assert dark.mean() < 0.01, dark.mean()
    assert (f.min(-1) < 200).mean() > 0.05                           # the body is there


def test_resize_rejects_bad_parameters(tmp_path):
    code, report, err = run_graph(tmp_path, """
        nodes:
          - {name: source, kind: synthetic, params: {width: 64, height: 48, frames: 2}}
          - {name: small, kind: resize, params: {crop: [1, 2, 3]}}
          - {name: sink, kind: discard}
        edges: [source.out -> small.in, small.out -> sink.in]
    """)
    assert code != 0 and "crop is [x, y, w, h]" in err
