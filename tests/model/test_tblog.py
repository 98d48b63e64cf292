"""The confusion-matrix image TensorBoard shows: shape, shading by row share."""

from __future__ import annotations

import numpy as np

from hftbot.model.tblog import confusion_image


def test_confusion_image_shades_each_cell_by_its_row_share():
    cm = np.array([[90, 10, 0], [5, 5, 0], [0, 0, 0]])
    img = confusion_image(cm, cell=48)
    assert img.shape == (3 * 48 + 1, 3 * 48 + 1, 3) and img.dtype == np.uint8

    def corner(i: int, j: int) -> np.ndarray:  # a pixel away from the text in the middle of the cell
        return img[i * 48 + 3, j * 48 + 3].astype(int)

    assert corner(0, 0).sum() < corner(0, 1).sum() < corner(0, 2).sum()  # 90% darker than 10% than 0%
    assert (corner(1, 0) == corner(1, 1)).all()  # 50% and 50% of a row alike, whatever the counts
    assert (corner(2, 2) == 255).all()  # an empty row stays white
    assert (img[48 + 10 : 2 * 48 - 10, 48 + 10 : 2 * 48 - 10] != img[48 + 3, 48 + 3]).any()  # "50%" is written
