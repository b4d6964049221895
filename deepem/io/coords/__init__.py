"""Coordinate files: RELION STAR, crYOLO .cbox, EMAN .box, Topaz text, CSV, and cryoSPARC's STAR.

**The coordinate convention, once.** Everywhere in deepem a coordinate is the *centre* of a
particle in pixels of the micrograph it names: ``x`` is the column index and ``y`` the row
index of the array as stored (MRC row 0 / the top row of an image), starting at 0. That is
RELION's ``rlnCoordinateX``/``rlnCoordinateY`` frame, with no y-flip. Formats that store
corners (EMAN ``.box``, crYOLO ``.cbox``) are converted on reading and writing; files counted
from the bottom row (DeepEM's own ``.box`` files) are flipped on request (``flip_y``).

Modules: ``columns`` (names of a picks table), ``star`` (STAR I/O), one module per format
(``relion``, ``cryolo``, ``eman``, ``topaz``, ``csv_table``, ``cryosparc``), ``detect`` (format from
content) and ``formats`` (the registry, frame conversions and streaming writers).
"""

from deepem.io.coords.columns import MIC, SCORE, X, Y
from deepem.io.coords.formats import read_coordinates, read_picks
from deepem.io.coords.star import picks_table, read_by_micrograph, read_star_table, star_writer, write_star

__all__ = [
    "MIC", "SCORE", "X", "Y", "picks_table", "read_by_micrograph", "read_coordinates", "read_picks",
    "read_star_table", "star_writer", "write_star",
]
