"""crYOLO ``.cbox`` files (crYOLO 1.8+): STAR syntax with a ``data_cryolo`` loop.

Columns ``_CoordinateX``/``_CoordinateY`` are the box's lower-left corner and ``_Width``/``_Height``
its size, as in EMAN ``.box`` files, so the centre is corner + size / 2; ``_Confidence`` becomes
the score. CBOX files hold every candidate crYOLO found whatever its confidence: filter them
(``deepem convert --min-score``, or crYOLO's box manager) before training on them.
"""

import pandas as pd

from deepem.errors import DeepEMError
from deepem.io.coords.columns import SCORE, X, Y
from deepem.io.coords.star import read_blocks

CORNER_X, CORNER_Y, WIDTH, HEIGHT = "CoordinateX", "CoordinateY", "Width", "Height"


def read(path):
    loop = read_blocks(path).get("cryolo")
    if not isinstance(loop, pd.DataFrame) or not {CORNER_X, CORNER_Y, WIDTH, HEIGHT} <= set(loop.columns):
        raise DeepEMError(f"{path}: no data_cryolo loop with _CoordinateX, _CoordinateY, _Width and _Height")
    if "CoordinateZ" in loop.columns and loop["CoordinateZ"].notna().any():
        raise DeepEMError(f"{path}: 3-D coordinates (_CoordinateZ); deepem picks 2-D micrographs")
    table = pd.DataFrame({X: loop[CORNER_X] + loop[WIDTH] / 2, Y: loop[CORNER_Y] + loop[HEIGHT] / 2})
    if "Confidence" in loop.columns and loop["Confidence"].notna().all():
        table[SCORE] = loop["Confidence"]
    return table
