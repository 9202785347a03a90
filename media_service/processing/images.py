"""Image uploads made safe to store and cheap to show: decoded under a pixel budget, the EXIF
orientation applied to the pixels, re-encoded with no metadata, with thumbnails and a blurhash.

What survives re-encoding: the pixels, transparency, animation timing and, deliberately, the ICC
colour profile. A profile describes colours, not the person or place; dropping it would show
wide-gamut (Display P3) phone photos washed out. Profiles larger than `_MAX_ICC_BYTES` are dropped.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Mapping
from typing import IO

from PIL import Image, ImageOps, ImageSequence

from media_service.processing import blurhash
from media_service.processing.base import MediaRejectedError, ProcessedImage, Thumbnail

JPEG = "image/jpeg"
PNG = "image/png"
GIF = "image/gif"
WEBP = "image/webp"
IMAGE_TYPES = frozenset({JPEG, PNG, GIF, WEBP})

DEFAULT_THUMBNAIL_SIZES: Mapping[str, int] = {"small": 320, "large": 1280}
DEFAULT_MAX_PIXELS = 50_000_000

# Pillow's format names; MPO is the multi-picture JPEG many phone cameras write.
_FORMAT_TYPES = {"JPEG": JPEG, "MPO": JPEG, "PNG": PNG, "GIF": GIF, "WEBP": WEBP}
# The decoders Pillow may try (its JPEG decoder also yields MPO).
_PILLOW_FORMATS = ["JPEG", "PNG", "GIF", "WEBP"]

# Types whose animations are re-encoded frame by frame (PNG: APNG). A multi-picture JPEG (MPO)
# keeps only its primary image: the others are previews or depth maps, not an animation.
_ANIMATED_TYPES = frozenset({GIF, WEBP, PNG})

_MAX_ICC_BYTES = 64 * 1024
# The only `info` entries a re-encode may carry over: everything else (exif, xmp, comment, PNG
# text chunks, dpi, ...) is metadata. Pillow's savers read some keys from `info` by default.
_KEPT_INFO = ("transparency", "duration", "loop", "background")

# The orientation tag's transforms, the same table ImageOps.exif_transpose uses.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112

JPEG_QUALITY = 90
WEBP_QUALITY = 90
THUMBNAIL_QUALITY = 82


def process_image(
    data: bytes,
    content_type: str,
    *,
    thumbnail_sizes: Mapping[str, int] = DEFAULT_THUMBNAIL_SIZES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ProcessedImage:
    """Decode `data` as `content_type` (one of IMAGE_TYPES, from sniffing), strip it, thumbnail it.

    Raises MediaRejectedError: "unsupported_type", "too_large" (more than `max_pixels` pixels),
    "undecodable" (garbage or truncated) or "type_mismatch" (decodes as another format)."""
    if content_type not in IMAGE_TYPES:
        raise MediaRejectedError(
            "unsupported_type", f"{content_type} is not an image type we process"
        )
    image = _open(data, content_type, max_pixels)
    try:
        icc = image.info.get("icc_profile")
        icc_profile = icc if isinstance(icc, bytes) and len(icc) <= _MAX_ICC_BYTES else None
        frames = _frames(image, data, max_pixels)
        first = frames[0]
        if len(frames) == 1:
            encoded = _encode_still(first, content_type, data, icc_profile)
        else:
            loop = image.info.get("loop")
            encoded = _encode_animation(frames, content_type, loop, icc_profile)
        thumbnails = tuple(
            _thumbnail(first, name, side, icc_profile) for name, side in thumbnail_sizes.items()
        )
        return ProcessedImage(
            data=encoded,
            content_type=content_type,
            width=first.width,
            height=first.height,
            thumbnails=thumbnails,
            blurhash=blurhash.encode_image(_eight_bit(first)),
        )
    finally:
        image.close()


def _open(data: bytes, content_type: str, max_pixels: int) -> Image.Image:
    try:
        # Only our four decoders may look at the bytes: anything else is undecodable here.
        image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as exc:
        raise MediaRejectedError("too_large", str(exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaRejectedError("undecodable", f"not a decodable image: {exc}") from exc
    decoded_type = _FORMAT_TYPES.get(image.format or "")
    if decoded_type != content_type:
        image.close()
        raise MediaRejectedError(
            "type_mismatch", f"declared {content_type} but the bytes are {decoded_type}"
        )
    # Header only so far: refuse before a single pixel is decoded.
    if image.width * image.height > max_pixels:
        image.close()
        raise MediaRejectedError(
            "too_large",
            f"{image.width}x{image.height} is more than {max_pixels} pixels",
        )
    return image


def _frame_count(image: Image.Image, data: bytes) -> int:
    """How many frames to consider. Pillow counts GIF frames by decoding each one, so a GIF of
    thousands of frames would cost all that work before the pixel budget is checked; its image
    descriptors are counted from the bytes instead."""
    if _FORMAT_TYPES.get(image.format or "") not in _ANIMATED_TYPES:
        return 1
    if image.format == "GIF":
        return _gif_frame_count(data)
    return int(getattr(image, "n_frames", 1))


def _frames(image: Image.Image, data: bytes, max_pixels: int) -> list[Image.Image]:
    """The decoded, oriented frames, metadata scrubbed. An animation whose frames together exceed
    the pixel budget keeps only its first frame rather than being refused."""
    try:
        # Reading EXIF (PNG keeps it after the pixel data) and counting frames may decode.
        method = _ORIENTATION.get(image.getexif().get(_EXIF_ORIENTATION, 1))
        frame_count = _frame_count(image, data)
        animate = frame_count > 1 and frame_count * image.width * image.height <= max_pixels
        if not animate:
            image.load()
            return [_scrub(ImageOps.exif_transpose(image))]
        frames = []
        for frame in ImageSequence.Iterator(image):
            frame.load()
            duration = frame.info.get("duration")
            copy = frame.copy() if method is None else frame.transpose(method)
            if duration is not None:
                copy.info["duration"] = duration
            frames.append(_scrub(copy))
        return frames
    except Image.DecompressionBombError as exc:
        raise MediaRejectedError("too_large", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaRejectedError("undecodable", f"image data is broken: {exc}") from exc


def _sink() -> IO[bytes]:
    """Where an encode writes. A real file, not a BytesIO: into a file with a descriptor Pillow
    encodes with the GIL released; into a BytesIO it holds the GIL for the whole encode, which
    stalls the event loop for hundreds of milliseconds per photo (measured by `bench media`)."""
    return tempfile.TemporaryFile()


def _drain(out: IO[bytes]) -> bytes:
    with out:
        out.seek(0)
        return out.read()


def _scrub(image: Image.Image) -> Image.Image:
    image.info = {key: image.info[key] for key in _KEPT_INFO if key in image.info}
    return image


def _encode_still(
    image: Image.Image, content_type: str, original: bytes, icc_profile: bytes | None
) -> bytes:
    out = _sink()
    extra: dict[str, object] = {}
    if icc_profile is not None:
        extra["icc_profile"] = icc_profile
    if content_type == JPEG:
        if image.mode not in ("L", "RGB", "CMYK"):
            image = image.convert("RGB")
        image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True, **extra)
    elif content_type == PNG:
        image.save(out, format="PNG", optimize=True, **extra)
    elif content_type == WEBP:
        lossless = _webp_is_lossless(original)
        image.save(out, format="WEBP", lossless=lossless, quality=WEBP_QUALITY, **extra)
    else:
        image.save(out, format="GIF")
    return _drain(out)


def _encode_animation(
    frames: list[Image.Image],
    content_type: str,
    loop: int | None,
    icc_profile: bytes | None,
) -> bytes:
    out = _sink()
    durations = [int(frame.info.get("duration", 100)) for frame in frames]
    first, rest = frames[0], frames[1:]
    extra: dict[str, object] = {}
    # A GIF without a loop count plays once; passing loop=0 would make it loop forever.
    if loop is not None:
        extra["loop"] = loop
    if content_type == GIF:
        first.save(out, "GIF", save_all=True, append_images=rest, duration=durations, **extra)
        return _drain(out)
    if icc_profile is not None:
        extra["icc_profile"] = icc_profile
    if content_type == PNG:
        first.save(out, "PNG", save_all=True, append_images=rest, duration=durations, **extra)
    else:
        first.save(
            out,
            format="WEBP",
            save_all=True,
            append_images=rest,
            duration=durations,
            quality=WEBP_QUALITY,
            **extra,
        )
    return _drain(out)


def _thumbnail(image: Image.Image, name: str, side: int, icc_profile: bytes | None) -> Thumbnail:
    """The image scaled so its longest side is at most `side`, never upscaled. The rule for the
    format: JPEG, unless the image has transparency, then WebP (alpha, and smaller than PNG)."""
    small = _eight_bit(image)
    small.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = _sink()
    extra: dict[str, object] = {}
    # A CMYK profile would mislabel the RGB the thumbnail is converted to.
    if icc_profile is not None and image.mode != "CMYK":
        extra["icc_profile"] = icc_profile
    if _has_alpha(small):
        small = small.convert("RGBA")
        small.save(out, format="WEBP", quality=THUMBNAIL_QUALITY, **extra)
        content_type = WEBP
    else:
        if small.mode not in ("L", "RGB"):
            small = small.convert("RGB")
        small.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True, **extra)
        content_type = JPEG
    return Thumbnail(
        size=name,
        data=_drain(out),
        content_type=content_type,
        width=small.width,
        height=small.height,
    )


def _eight_bit(image: Image.Image) -> Image.Image:
    """A copy fit for 8-bit output: 16-bit and 32-bit greyscale scaled to 8 bits (converting
    them directly would clip everything above 255 to white), palette transparency as alpha."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        return image.convert("RGBA")
    return image.copy()


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _webp_is_lossless(data: bytes) -> bool:
    """Whether a still WebP holds a lossless (VP8L) bitstream, so re-encoding keeps it lossless."""
    offset = 12
    while offset + 8 <= len(data):
        chunk = data[offset : offset + 4]
        if chunk == b"VP8L":
            return True
        if chunk == b"VP8 ":
            return False
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        offset += 8 + size + (size & 1)
    return False


def _gif_frame_count(data: bytes) -> int:
    """The image descriptors in a GIF, walking its blocks without decoding (a truncated or
    malformed stream counts what was found; the decoder refuses it later)."""
    if len(data) < 13:
        return 0
    flags = data[10]
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    while offset < len(data):
        introducer = data[offset]
        if introducer == 0x3B:  # trailer
            break
        if introducer == 0x21:  # extension: label, then data sub-blocks
            offset += 2
        elif introducer == 0x2C:  # image descriptor, local colour table, LZW code size
            frames += 1
            if offset + 10 > len(data):
                break
            local = data[offset + 9]
            offset += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        else:
            break
        while offset < len(data) and data[offset] != 0:
            offset += data[offset] + 1
        offset += 1
    return frames
