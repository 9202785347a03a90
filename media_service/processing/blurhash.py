"""A BlurHash encoder (and the decoder that checks it), after the reference implementation at
github.com/woltapp/blurhash: pixels to linear light, a cosine transform into x*y components, the
DC term as an sRGB colour and the AC terms quantised against their largest magnitude, all in
base 83."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
_BASE83_VALUE = {char: index for index, char in enumerate(_BASE83)}

RGB = tuple[int, int, int]

# Blurhash is computed on a copy at most this many pixels on its longest side: the hash keeps
# only a few cosine components, so more pixels change nothing visible and cost time.
HASH_SOURCE_SIDE = 32


def encode(
    pixels: Sequence[RGB] | Image.Image,
    width: int,
    height: int,
    x_components: int = 4,
    y_components: int = 3,
) -> str:
    """The blurhash of `width`*`height` sRGB pixels given row by row (or a Pillow image of that
    size, converted to RGB)."""
    if not (1 <= x_components <= 9 and 1 <= y_components <= 9):
        raise ValueError("blurhash components must be between 1 and 9 on each axis")
    if isinstance(pixels, Image.Image):
        if pixels.size != (width, height):
            raise ValueError(f"image is {pixels.size}, not {(width, height)}")
        rgb = pixels if pixels.mode == "RGB" else pixels.convert("RGB")
        raw = rgb.tobytes()
        pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    if width < 1 or height < 1 or len(pixels) != width * height:
        raise ValueError(f"expected {width}x{height} pixels, got {len(pixels)}")

    linear = [(_to_linear(r), _to_linear(g), _to_linear(b)) for r, g, b in pixels]
    cos_x = [[math.cos(math.pi * i * x / width) for x in range(width)] for i in range(x_components)]
    cos_y = [
        [math.cos(math.pi * j * y / height) for y in range(height)] for j in range(y_components)
    ]

    factors: list[tuple[float, float, float]] = []
    for j in range(y_components):
        for i in range(x_components):
            normalisation = 1.0 if i == 0 and j == 0 else 2.0
            r = g = b = 0.0
            for y in range(height):
                row_basis = cos_y[j][y]
                row = y * width
                for x in range(width):
                    basis = cos_x[i][x] * row_basis
                    pr, pg, pb = linear[row + x]
                    r += basis * pr
                    g += basis * pg
                    b += basis * pb
            scale = normalisation / (width * height)
            factors.append((r * scale, g * scale, b * scale))

    dc, ac = factors[0], factors[1:]
    parts = [_base83((x_components - 1) + (y_components - 1) * 9, 1)]
    if ac:
        actual_max = max(abs(channel) for factor in ac for channel in factor)
        quantised_max = max(0, min(82, math.floor(actual_max * 166 - 0.5)))
        maximum = (quantised_max + 1) / 166
        parts.append(_base83(quantised_max, 1))
    else:
        maximum = 1.0
        parts.append(_base83(0, 1))
    parts.append(_base83(_encode_dc(dc), 4))
    parts.extend(_base83(_encode_ac(factor, maximum), 2) for factor in ac)
    return "".join(parts)


def encode_image(image: Image.Image, x_components: int = 4, y_components: int = 3) -> str:
    """The blurhash of an image of any size, computed on a small downscaled copy."""
    small = image.convert("RGB") if image.mode != "RGB" else image.copy()
    small.thumbnail((HASH_SOURCE_SIDE, HASH_SOURCE_SIDE), Image.Resampling.BILINEAR)
    return encode(small, small.width, small.height, x_components, y_components)


def components(blurhash: str) -> tuple[int, int]:
    """The (x, y) component counts a hash declares in its first character."""
    size_flag = _decode83(blurhash[0])
    return size_flag % 9 + 1, size_flag // 9 + 1


def decode(blurhash: str, width: int, height: int, punch: float = 1.0) -> list[RGB]:
    """The `width`*`height` sRGB pixels (row by row) a hash stands for."""
    x_components, y_components = components(blurhash)
    if len(blurhash) != 4 + 2 * x_components * y_components:
        raise ValueError(f"blurhash {blurhash!r} has the wrong length for its components")
    maximum = (_decode83(blurhash[1]) + 1) / 166 * punch
    colours = [_decode_dc(_decode83(blurhash[2:6]))]
    for index in range(1, x_components * y_components):
        start = 4 + index * 2
        colours.append(_decode_ac(_decode83(blurhash[start : start + 2]), maximum))
    pixels: list[RGB] = []
    for y in range(height):
        for x in range(width):
            r = g = b = 0.0
            for j in range(y_components):
                for i in range(x_components):
                    basis = math.cos(math.pi * x * i / width) * math.cos(math.pi * y * j / height)
                    cr, cg, cb = colours[i + j * x_components]
                    r += cr * basis
                    g += cg * basis
                    b += cb * basis
            pixels.append((_to_srgb(r), _to_srgb(g), _to_srgb(b)))
    return pixels


def average_colour(blurhash: str) -> RGB:
    """The image's average sRGB colour, which the DC term carries exactly."""
    value = _decode83(blurhash[2:6])
    return value >> 16, (value >> 8) & 255, value & 255


def _to_linear(value: int) -> float:
    v = value / 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _to_srgb(value: float) -> int:
    v = max(0.0, min(1.0, value))
    if v <= 0.0031308:
        return int(v * 12.92 * 255 + 0.5)
    return int((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _sign_pow(value: float, exponent: float) -> float:
    return math.copysign(abs(value) ** exponent, value)


def _encode_dc(colour: tuple[float, float, float]) -> int:
    r, g, b = colour
    return (_to_srgb(r) << 16) + (_to_srgb(g) << 8) + _to_srgb(b)


def _encode_ac(colour: tuple[float, float, float], maximum: float) -> int:
    r, g, b = (
        max(0, min(18, math.floor(_sign_pow(channel / maximum, 0.5) * 9 + 9.5)))
        for channel in colour
    )
    return r * 19 * 19 + g * 19 + b


def _decode_dc(value: int) -> tuple[float, float, float]:
    return (
        _to_linear(value >> 16),
        _to_linear((value >> 8) & 255),
        _to_linear(value & 255),
    )


def _decode_ac(value: int, maximum: float) -> tuple[float, float, float]:
    quantised = (value // (19 * 19), (value // 19) % 19, value % 19)
    r, g, b = (_sign_pow((q - 9) / 9, 2.0) * maximum for q in quantised)
    return r, g, b


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[(value // 83 ** (length - i - 1)) % 83] for i in range(length))


def _decode83(text: str) -> int:
    value = 0
    for char in text:
        value = value * 83 + _BASE83_VALUE[char]
    return value
