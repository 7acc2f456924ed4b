"""Images read with Pillow: a folder of class subfolders (``train "pets/train/"``: the class
names are the subfolders' names, sorted), and image files or folders of them to predict on.

Files: ``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.gif`` (``dsl.dataformats.IMAGE_SUFFIXES``;
a GIF's first frame), searched through the subfolders in sorted order; hidden files (a name
starting with ``.``, files and folders) are skipped, links to folders followed, any other file
is an error naming it. Each image becomes
the model's input ``CxHxW``: grayscale (``L``) for C = 1, RGB for C = 3 (an alpha channel
is dropped), 16-bit and floating-point images refused, a JPEG's EXIF orientation applied
(as viewers show the photo); an image of another size is refused
unless the data block says ``resize stretch`` (bilinear, to H x W, the aspect ratio not
kept) or ``resize crop`` (scaled, bilinear, until it covers H x W, then the centre cut out).
Pixels stay uint8 ``(n, C, H, W)``, so ``scale 1/255`` works as for arrays.

Every unreadable, truncated or non-image file is one ``DataError`` naming the file.
Pillow is the optional dependency ``dlrun[images]``; without it, reading an image says so.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dlrun.dsl.dataformats import IMAGE_SUFFIXES
from dlrun.runtime.data.folders import files_below, folder_shown, hidden
from dlrun.errors import DataError
from dlrun.fileopen import NotReadable, open_regular
from dlrun.runtime.data.reader import Raw, Reader
from dlrun.runtime.data.text import one_line, shape_text

_MODES = {1: "L", 3: "RGB"}
# images are refused above this many pixels before they are decoded (Pillow itself refuses
# beyond about 179 million, and only warns from about 89 million)
MAX_PIXELS = 1 << 26
# modes whose values do not fit 8 bits: converting them to L/RGB would clip silently
_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def pillow():
    """``PIL.Image`` and ``PIL.ImageOps``, or a DataError saying how to install Pillow."""
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise DataError("reading images needs Pillow, which is not installed: "
                        "pip install 'dlrun[images]' (or pip install Pillow)") from None
    return Image, ImageOps


def image_size(input_shape, shown: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image input; a DataError for another input."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or shape[0] not in _MODES:
        raise DataError(f"{shown}: images need an input 1xHxW (grayscale) or 3xHxW (RGB); "
                        f"the model's input is {shape_text(shape)}")
    return shape


def image_files(root: Path, shown: str) -> list[str]:
    """Every image below ``root``, as sorted ``/``-separated paths relative to it; a
    DataError for a file that is not an image (by its name)."""
    return files_below(root, shown, IMAGE_SUFFIXES, "an image file")


def class_folders(root: Path, shown: str) -> list[tuple[str, list[str]]]:
    """``(class name, image paths relative to root)`` for each class subfolder, by name."""
    if not root.is_dir():
        raise DataError(f"{shown}: image folder not found" if not root.exists()
                        else f"{shown}: not a folder (an image folder is written with a trailing '/')")
    try:
        entries = sorted(e for e in os.listdir(root) if not hidden(e))
    except OSError as err:
        raise DataError(f"{shown}: cannot list the image folder ({one_line(err)})") from None
    stray = [e for e in entries if not (root / e).is_dir()]
    if stray:
        raise DataError(f"{shown}{stray[0]}: a file beside the class subfolders; an image folder holds "
                        f"one subfolder of images per class (the class names)")
    if not entries:
        raise DataError(f"{shown}: no class subfolders (an image folder holds one subfolder of images "
                        f"per class)")
    classes = []
    for name in entries:
        files = image_files(root / name, f"{shown}{name}/")
        if not files:
            raise DataError(f"{shown}{name}/: the class folder '{name}' holds no images")
        classes.append((name, [f"{name}/{f}" for f in files]))
    return classes


def read_image(path: Path, shown: str, size: tuple[int, int, int], resize: str | None) -> np.ndarray:
    """The image file ``path`` as uint8 ``(C, H, W)`` of ``size`` (see the module docstring)."""
    Image, ImageOps = pillow()
    c, h, w = size
    try:
        with open_regular(path) as f, Image.open(f) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise DataError(f"{shown}: image is {im.size[0]} wide and {im.size[1]} high, more than "
                                f"the {MAX_PIXELS:,} pixels dlrun decodes (damaged header?)")
            if im.mode in _WIDE_MODES:
                raise DataError(f"{shown}: a {im.mode} image (more than 8 bits per value); expected 8-bit "
                                f"grayscale or color images")
            im = ImageOps.exif_transpose(im)  # a photo's orientation tag, as viewers show it
            if im.size != (w, h):
                if resize is None:
                    raise DataError(
                        f"{shown}: image is {im.size[0]} wide and {im.size[1]} high, but the model's input "
                        f"is {shape_text(size)} ({w} wide, {h} high); add `resize stretch` or "
                        f"`resize crop` to the data block")
                im = im.convert(_MODES[c])
                if resize == "stretch":
                    im = im.resize((w, h), Image.BILINEAR)
                else:
                    im = ImageOps.fit(im, (w, h), method=Image.BILINEAR)
            else:
                im = im.convert(_MODES[c])
            a = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except NotReadable as err:
        raise DataError(f"{shown}: {err.reason('image file')}") from None
    except MemoryError:
        raise DataError(f"{shown}: not enough memory to decode this image (damaged header?)") from None
    except Exception as err:  # noqa: BLE001
        # Pillow parses untrusted bytes and fails in many ways (UnidentifiedImageError,
        # OSError for a truncated file, SyntaxError, ValueError, DecompressionBombError, ...)
        raise DataError(f"{shown}: cannot read as an image ({type(err).__name__}: {one_line(err)})") from None
    return a[None] if c == 1 else a.transpose(2, 0, 1)


def read_images(root: Path, files: list[str], shown: str, size, resize) -> np.ndarray:
    """The images ``files`` (relative to ``root``) as one uint8 ``(n, C, H, W)`` array."""
    x = np.empty((len(files),) + tuple(size), np.uint8)
    for i, rel in enumerate(files):
        x[i] = read_image(root / rel, f"{shown}{rel}", size, resize)
    return x



def _pixel_where(files: list[str], shown: str, size):
    c, h, w = size

    def where(i, j):
        ch, rest = divmod(int(j), h * w)
        return f"{shown}{files[i]}, channel {ch}, row {rest // w}, column {rest % w}"

    return where


class ImageFolderReader(Reader):
    """A folder of class subfolders of images (a data block's source), or a folder of images
    to predict on."""

    name = "imagefolder"
    noun = "image folders"

    def read(self, p, shown, src, *, label, need_y, features, against, input_shape, resize=None):
        shown = folder_shown(shown)
        size = image_size(input_shape, shown)
        classes = class_folders(p, shown)
        files = [f for _, fs in classes for f in fs]
        x = read_images(p, files, shown, size, resize)
        # no header to read alone (read_header None): check --data reads every image, as
        # training does, so an unreadable one is found there too
        y = np.array([name for name, fs in classes for _ in fs])
        return Raw(x, y, shown, shown, _pixel_where(files, shown, size), lambda i: f"{shown}{files[i]}")

    def read_labels(self, p, shown, label):
        raise DataError(f"{folder_shown(shown)}: an image folder cannot be a labels file (its labels are "
                        f"its class subfolders)")

    def read_inputs(self, p, shown, *, label, feature_names, against, input_shape, resize=None):
        shown = folder_shown(shown)
        files = self.sample_names(p, shown)
        size = image_size(input_shape, shown)
        return read_images(p, files, shown, size, resize), _pixel_where(files, shown, size)

    def sample_names(self, p, shown) -> list[str]:
        """The images to predict on, in the order ``read_inputs`` reads them."""
        shown = folder_shown(shown)
        if not Path(p).is_dir():
            raise DataError(f"{shown}: image folder not found")
        files = image_files(Path(p), shown)
        if not files:
            raise DataError(f"{shown}: no images in this folder")
        return files



class ImageFileReader(Reader):
    """One image file: an input to predict on."""

    name = "image"
    noun = "image files"

    def read(self, p, shown, src, *, label, need_y, features, against, input_shape, resize=None):
        raise DataError(f"{shown}: one image file cannot be a data source; name a folder of class "
                        f"subfolders, with a trailing '/'")

    def read_labels(self, p, shown, label):
        raise DataError(f"{shown}: an image file cannot be a labels file")

    def read_inputs(self, p, shown, *, label, feature_names, against, input_shape, resize=None):
        size = image_size(input_shape, shown)
        x = read_image(p, shown, size, resize)[None]
        return x, (lambda i, j: _pixel_where([""], shown, size)(0, j))

    def sample_names(self, p, shown) -> list[str]:
        return [os.path.basename(str(p))]


FOLDER_READER = ImageFolderReader()
FILE_READER = ImageFileReader()
