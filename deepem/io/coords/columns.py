"""Column names of a picks table: RELION labels, whatever format the picks came from.

A picks table has ``X`` and ``Y`` (centres, see :mod:`deepem.io.coords`) and optionally
``SCORE``, ``MIC`` (the micrograph each row belongs to, as the file names it), ``PIXEL_SIZE``
(the pixel size of the micrograph the coordinates were picked on, when the file states it) and
``ORIGIN_X``/``ORIGIN_Y`` (RELION 3.1+ particle shifts in Å, when a refined particle STAR has them:
the particle's centre is the coordinate minus the shift).
"""

X, Y = "rlnCoordinateX", "rlnCoordinateY"
SCORE = "rlnAutopickFigureOfMerit"
MIC = "rlnMicrographName"
PIXEL_SIZE = "rlnMicrographPixelSize"
OPTICS_GROUP = "rlnOpticsGroup"
COORDINATE_FILE = "rlnMicrographCoordinates"
ORIGIN_X, ORIGIN_Y = "rlnOriginXAngst", "rlnOriginYAngst"
ORIGIN_PX = ("rlnOriginX", "rlnOriginY")  # RELION 3.0: pixels of the particle images
