"""Column names of a picks table: RELION labels, whatever format the picks came from.

A picks table has ``X`` and ``Y`` (centres, see :mod:`deepem.io.coords`) and optionally
``SCORE``, ``MIC`` (the micrograph each row belongs to, as the file names it) and ``PIXEL_SIZE``
(the pixel size of the micrograph the coordinates were picked on, when the file states it).
"""

X, Y = "rlnCoordinateX", "rlnCoordinateY"
SCORE = "rlnAutopickFigureOfMerit"
MIC = "rlnMicrographName"
PIXEL_SIZE = "rlnMicrographPixelSize"
OPTICS_GROUP = "rlnOpticsGroup"
COORDINATE_FILE = "rlnMicrographCoordinates"
