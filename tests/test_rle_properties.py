"""Property-based round trips for every run-length encoding segal writes, against the decoders of
the tools that read them where they are installed (pycocotools, label-studio-converter)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segal.interchange import brush_rle, coco, cvat_xml

masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(np.bool_, hw, elements=st.booleans()))
FAST = settings(max_examples=150, deadline=None)


@FAST
@given(masks)
def test_coco_rle_decodes_with_pycocotools(mask):
    from pycocotools import mask as mask_utils

    rle = coco.encode(mask)
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
    assert int(mask_utils.area(rle)) == int(mask.sum())
    counts = rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]
    # segal's own reader of compressed counts (used to bounds-check before pycocotools) agrees
    assert sum(coco.string_counts(counts)) == mask.size


@FAST
@given(masks)
def test_cvat_box_rle_round_trip(mask):
    if not mask.any():
        return  # CVAT has no shape for an empty mask
    runs, left, top, width, height = cvat_xml.box_rle(mask)
    assert sum(runs) == width * height and all(r >= 0 for r in runs)
    full = np.zeros_like(mask)
    full[top:top + height, left:left + width] = cvat_xml.decode_box_rle(runs, width, height)
    np.testing.assert_array_equal(full, mask)


@FAST
@given(masks)
def test_brush_rle_round_trip_and_label_studio_decoder(mask):
    rle = brush_rle.mask_to_rle(mask)
    np.testing.assert_array_equal(brush_rle.rle_to_mask(rle, *mask.shape), mask)
    try:
        from label_studio_converter.brush import decode_rle
    except ImportError:
        return
    theirs = np.asarray(decode_rle(rle)).reshape(mask.shape[0], mask.shape[1], 4)[:, :, 3] >= 128
    np.testing.assert_array_equal(theirs, mask)


@FAST
@given(arrays(np.uint8, st.integers(1, 400), elements=st.integers(0, 255)))
def test_brush_rle_encodes_arbitrary_bytes_like_label_studio(data):
    rle = brush_rle.encode_rle(data)
    np.testing.assert_array_equal(brush_rle.decode_rle(rle, expected_len=len(data)), data)
    converter = pytest.importorskip("label_studio_converter.brush")
    assert list(rle) == list(converter.encode_rle(data))
