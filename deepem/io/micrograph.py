"""Read micrographs: MRC/MRCS through mrcfile, TIFF/PNG/JPEG (8 or 16 bit) through Pillow.

Arrays come back as float32 ``[row, column]`` with row 0 the first row stored in the file:
MRC rows as ``mrcfile`` returns them, images as Pillow decodes them (top row first). That is
the frame coordinates refer to everywhere in deepem (see ``deepem.io.coords``).
"""

import contextlib
import math
import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np
from PIL import Image

from deepem.errors import DeepEMError

MRC_SUFFIXES = {".mrc", ".mrcs", ".map", ".st"}
IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
SUFFIXES = MRC_SUFFIXES | IMAGE_SUFFIXES


def micrograph_names(paths):
    """``{name: path}`` for micrograph files; two files with one stem are an error."""
    names = {}
    for path in paths:
        p = Path(path)
        if p.suffix.lower() not in SUFFIXES:
            raise DeepEMError(f"{p}: unsupported micrograph format '{p.suffix}'; use MRC, TIFF, PNG or JPEG")
        if p.stem in names and os.path.abspath(names[p.stem]) == os.path.abspath(p):
            continue  # the same file given twice
        if p.stem in names:
            raise DeepEMError(
                f"{p}: same name '{p.stem}' as {names[p.stem]}; micrograph file names must be unique"
            )
        names[p.stem] = str(p)
    return names


def name_of(entry):
    """A micrograph's name from a micrograph column entry: its file name less a micrograph extension
    (``Movies/mic.001.mrc`` and ``mic.001`` both name ``mic.001``)."""
    path = Path(str(entry))
    return path.stem if path.suffix.lower() in SUFFIXES else path.name


def read_micrograph(path, use_pixel_size=False):
    """Return ``(image, pixel_size)``; pixel_size is the MRC header's Å/px or None when absent.
    ``use_pixel_size``: the caller scales by it, so pixels that are not square are refused."""
    path = Path(path)
    if not path.is_file():
        raise DeepEMError(f"{path}: micrograph not found; check the 'micrographs' entry of the config")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        image, pixel_size = _read_image(path), None
    else:
        image, pixel_size = _read_mrc(path, use_pixel_size)
    if not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise DeepEMError(f"{path}: {bad} NaN or Inf pixels; re-export the micrograph from motion correction")
    if min(image.shape) < 16:
        raise DeepEMError(f"{path}: image of shape {image.shape} is too small to be a micrograph")
    return image, pixel_size


OLD_STYLE = ("Map ID string not found", "Unrecognised machine stamp")  # all that an MRC of before MRC2000 lacks


@contextlib.contextmanager
def _strict_mrc(path, header_only=False):
    """mrcfile.open, strict: mrcfile's warnings (RuntimeWarning) about a damaged file are raised as
    errors, so a bad header is an error, not garbage sizes; other libraries' warnings stay warnings.
    A file whose only fault is an old-style header (no 'MAP ' ID or machine stamp, as SPIDER and EMAN1
    converters wrote) is read, as mrcfile's permissive mode reads it (little-endian)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            mrc = mrcfile.open(path, header_only=header_only, permissive=False)
        except (ValueError, RuntimeWarning) as exc:
            if not str(exc).startswith(OLD_STYLE):
                raise
            mrc = _old_style_mrc(path, header_only, exc)
        with mrc:
            yield mrc


def _old_style_mrc(path, header_only, fault):
    """The file opened permissive, its header alone memory-mapped so that its mode and data size are
    checked too; any complaint besides an old-style header's (``fault``) is an error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = (mrcfile.mmap if header_only else mrcfile.open)(path, permissive=True)
        except ValueError as exc:
            raise ValueError(f"{fault}; {exc}") from None
    other = [str(w.message) for w in caught if not str(w.message).startswith(OLD_STYLE)]
    if other or mrc.data is None or min(mrc.data.shape, default=0) < 1:
        mrc.close()
        raise ValueError(f"{fault}; {other[0] if other else 'no data'}")
    return mrc


def read_header(path, use_pixel_size=False):
    """``(height, width, pixel_size or None)`` of a micrograph, from its header only.
    ``use_pixel_size``: the caller scales by it, so pixels that are not square are refused."""
    path = Path(path)
    try:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            with Image.open(path) as img:
                return img.height, img.width, None
        with _strict_mrc(path, header_only=True) as mrc:
            voxel = _pixel_size(mrc.header, path if use_pixel_size else None)
            height, width = int(mrc.header.ny), int(mrc.header.nx)
    except (OSError, ValueError, AttributeError, RuntimeWarning) as exc:
        kind = "image" if path.suffix.lower() in IMAGE_SUFFIXES else "MRC"
        raise DeepEMError(f"{path}: not a readable micrograph header ({exc}); check it is a complete {kind}") from None
    if height < 1 or width < 1:
        raise DeepEMError(f"{path}: header gives a size of {width} x {height} px; check it is a complete MRC")
    return height, width, voxel


def _read_mrc(path, use_pixel_size):
    try:
        with _strict_mrc(path) as mrc:
            voxel = _pixel_size(mrc.header, path if use_pixel_size else None)
            if np.iscomplexobj(mrc.data):
                raise DeepEMError(f"{path}: complex values (MRC mode {int(mrc.header.mode)}), an FFT, not a micrograph")
            data = mrc.data.view(np.uint8) if _unsigned_bytes(mrc.header) else mrc.data
            data = np.asarray(data, dtype=np.float32)
    except (ValueError, OSError, RuntimeWarning) as exc:
        raise DeepEMError(f"{path}: not a readable MRC file ({exc}); check it is a complete, uncorrupted MRC") from None
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise DeepEMError(
                f"{path}: a stack of {data.shape[0]} frames, not a 2-D micrograph; motion-correct first"
            )
        data = data[0]
    if data.ndim != 2:
        raise DeepEMError(f"{path}: expected a 2-D micrograph, found data of shape {data.shape}")
    return data, voxel


def _pixel_size(header, square_for=None):
    """The header's x pixel size in A (cell length / sampling), or None where it gives none: mrcfile's
    own division would warn, which reading turns into an error, when the sampling ``mx`` is 0.

    With ``square_for`` (the file's path) a y size more than 1 % from the x size is an error:
    deepem scales both axes by the x size. Callers ask where the header's size is used, not
    overridden by the user's pixel_size.
    """
    x = _axis_size(int(header.mx), float(header.cella.x))
    y = _axis_size(int(header.my), float(header.cella.y))
    if square_for is not None and x and y and abs(y / x - 1) > 0.01:
        raise DeepEMError(
            f"{square_for}: the header gives pixels of {x:g} A in x but {y:g} A in y; deepem needs square pixels: "
            "resample the micrograph or, if its pixels are square, set pixel_size in the config (--pixel-size), "
            "which overrides the header"
        )
    return x


def _axis_size(sampling, cell):
    return cell / sampling if sampling > 0 and cell > 0 and math.isfinite(cell) else None


IMOD_STAMP = 1146047817  # 'IMOD' at byte 152 of the header; the flags after it say how bytes are stored


def _unsigned_bytes(header):
    """Whether an 8-bit (mode 0) MRC holds unsigned bytes. The MRC2014 standard's bytes are signed,
    and mrcfile reads them so; IMOD (and SerialEM) write unsigned bytes, and say so by their stamp
    with flag bit 0 clear."""
    if int(header.mode) != 0:
        return False
    stamp, flags = np.frombuffer(bytes(header.extra2)[40:48], dtype=header.mode.dtype)
    return int(stamp) == IMOD_STAMP and not int(flags) & 1


def _read_image(path):
    try:
        with Image.open(path) as img:
            _refuse_movie(img, path)
            img.load()
            if img.mode in ("RGB", "RGBA", "P", "LA"):
                img = img.convert("L")
            data = np.asarray(img)
            if data.dtype == np.uint8 and _signed_tiff(img):  # Pillow reads signed bytes as unsigned
                data = data.view(np.int8)
            data = data.astype(np.float32)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DeepEMError(
            f"{path}: not a readable image ({exc}); check the file is complete, and a greyscale image of 8 or 16 bit "
            "integers or 32 bit floats (or an MRC)"
        ) from None
    if data.ndim != 2:
        raise DeepEMError(f"{path}: expected a single-channel image, found shape {data.shape}; save it as greyscale")
    return data


def _signed_tiff(img):
    """Whether a TIFF's samples are signed integers (SampleFormat 2)."""
    fmt = getattr(img, "tag_v2", {}).get(339, 1)
    return (fmt[0] if isinstance(fmt, tuple) else fmt) == 2


def _refuse_movie(img, path):
    """A multi-page image whose second page is the size of the first is a movie; another second
    page (a thumbnail), or a damaged link to one, leaves the first page to be read."""
    size = img.size
    try:
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            img.seek(1)
    except (OSError, ValueError, TypeError, EOFError):  # Pillow's, on a damaged page chain
        frames = 1
    if frames > 1 and img.size == size:
        raise DeepEMError(f"{path}: a stack of {frames} frames, not a 2-D micrograph; motion-correct first")
    img.seek(0)


def write_mrc(path, image, pixel_size, label="deepem"):
    """Write a float32 MRC (2-D, or a stack of sections) with its pixel size (the caller makes it atomic).

    The header label is fixed (mrcfile would stamp the time), so reruns are byte-identical.
    """
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(image, dtype=np.float32))
        mrc.voxel_size = pixel_size
        mrc.header.label[0] = label

