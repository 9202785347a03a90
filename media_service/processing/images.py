"""Images after upload: decoded with a pixel limit, orientation applied, re-encoded without any
metadata (EXIF with its GPS position, XMP, comments, PNG text), measured, thumbnailed, and
described by a blurhash.

Choices: the ICC colour profile is kept (it is colour, not personal data, and dropping it shifts
colours); animated GIF and WebP keep their frames; thumbnails are JPEG, or PNG when the image has
transparency (JPEG has none).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from . import blurhash
from .base import MediaRejectedError, ProcessedImage, Thumbnail

_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
IMAGE_TYPES = frozenset(_FORMATS)
DEFAULT_THUMBNAILS: Mapping[str, int] = {"small": 320, "large": 1280}
_BLURHASH_SIDE = 32


def _open(data: bytes, max_pixels: int) -> Image.Image:
    # Pillow's own guard warns at the limit and raises at twice it; refuse at the limit.
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaRejectedError("undecodable", f"not a readable image: {exc}") from exc
    except Image.DecompressionBombError as exc:
        raise MediaRejectedError("too_large", str(exc)) from exc
    if width * height > max_pixels:
        raise MediaRejectedError(
            "too_large", f"{width}x{height} is over the limit of {max_pixels} pixels"
        )
    image = Image.open(io.BytesIO(data))
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaRejectedError("undecodable", f"the image is damaged: {exc}") from exc
    return image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )


def _clean(image: Image.Image, fmt: str) -> bytes:
    """The image re-encoded with no metadata but its colour profile."""
    out = io.BytesIO()
    icc = image.info.get("icc_profile")
    extra: dict[str, object] = {"icc_profile": icc} if icc else {}
    animated = getattr(image, "is_animated", False) and fmt in ("GIF", "WEBP")
    if animated:
        frames = [ImageOps.exif_transpose(f.copy()) for f in ImageSequence.Iterator(image)]
        frames[0].save(
            out,
            fmt,
            save_all=True,
            append_images=frames[1:],
            loop=image.info.get("loop", 0),
            duration=image.info.get("duration", 100),
        )
        return out.getvalue()
    upright = ImageOps.exif_transpose(image)
    if fmt == "JPEG":
        upright = upright.convert("RGB") if upright.mode not in ("RGB", "L", "CMYK") else upright
        upright.save(out, fmt, quality=90, optimize=True, **extra)
    elif fmt == "PNG":
        upright.save(out, fmt, optimize=True, **extra)
    else:
        upright.save(out, fmt, **extra)
    return out.getvalue()


def _thumbnail(image: Image.Image, name: str, side: int) -> Thumbnail:
    copy = image.copy()
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)  # never upscales
    out = io.BytesIO()
    if _has_alpha(copy):
        copy.convert("RGBA").save(out, "PNG", optimize=True)
        content_type = "image/png"
    else:
        copy.convert("RGB").save(out, "JPEG", quality=82, optimize=True)
        content_type = "image/jpeg"
    return Thumbnail(name, out.getvalue(), content_type, copy.width, copy.height)


def _blurhash(image: Image.Image) -> str:
    small = image.convert("RGB")
    small.thumbnail((_BLURHASH_SIDE, _BLURHASH_SIDE), Image.Resampling.BILINEAR)
    raw = small.tobytes()
    pixels = [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]
    return blurhash.encode(pixels, small.width, small.height)


def process_image(
    data: bytes,
    content_type: str,
    *,
    thumbnail_sizes: Mapping[str, int] = DEFAULT_THUMBNAILS,
    max_pixels: int = 50_000_000,
) -> ProcessedImage:
    """The cleaned image, its size, thumbnails and blurhash; MediaRejectedError when it is not
    an acceptable image of `content_type`."""
    fmt = _FORMATS.get(content_type)
    if fmt is None:
        raise MediaRejectedError("type_not_allowed", f"{content_type} is not an image type")
    image = _open(data, max_pixels)
    if image.format != fmt:
        raise MediaRejectedError(
            "type_mismatch", f"the bytes decode as {image.format}, not {content_type}"
        )
    cleaned = _clean(image, fmt)
    upright = ImageOps.exif_transpose(image)
    first = upright.copy()
    thumbnails = tuple(_thumbnail(first, name, side) for name, side in thumbnail_sizes.items())
    return ProcessedImage(
        data=cleaned,
        content_type=content_type,
        width=upright.width,
        height=upright.height,
        thumbnails=thumbnails,
        blurhash=_blurhash(first),
    )
