"""A STAR file for cryoSPARC's Import Particle Stack (coordinates only, no particle images).

One loop with rlnMicrographName (the micrograph's file name, which cryoSPARC matches to the
file names of the micrographs imported into it) and rlnCoordinateX/Y: centres in RELION's
frame. cryoSPARC flips y itself when it imports RELION coordinates, so nothing is flipped here.
"""

import contextlib
from pathlib import PurePath

from deepem.io.coords.columns import MIC, X, Y
from deepem.io.coords.star import star_writer


@contextlib.contextmanager
def writer(path, options):
    with star_writer(path, [MIC, X, Y]) as append:
        yield lambda name, source, table: append(table, **{MIC: PurePath(source).name})
