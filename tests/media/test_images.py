"""Image processing: metadata gone, orientation applied, thumbnails and blurhash right, bad input
refused with the right reason."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import ExifTags, Image, ImageCms

from media_service.processing import blurhash
from media_service.processing.base import MediaRejectedError, ProcessedImage
from media_service.processing.images import IMAGE_TYPES, process_image
from tests.media import samples


def reopen(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_no_metadata(image: Image.Image) -> None:
    assert len(image.getexif()) == 0
    assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "comment", "Comment", "Author"):
        assert key not in image.info, key


def near(colour: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour[:3], expected, strict=True))


def test_sample_jpeg_carries_gps_and_orientation() -> None:
    """The sample really has what processing must remove (so the next tests mean something)."""
    image = reopen(samples.jpeg(orientation=6))
    exif = image.getexif()
    assert exif[ExifTags.Base.Orientation] == 6
    assert exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert "xmp" in image.info


def test_jpeg_is_reencoded_without_exif_gps_or_xmp() -> None:
    """The stored JPEG has no EXIF at all, no GPS IFD and no XMP."""
    result = process_image(samples.jpeg(), "image/jpeg")
    assert result.content_type == "image/jpeg"
    image = reopen(result.data)
    assert image.format == "JPEG"
    assert_no_metadata(image)
    assert b"ChatmeshCam" not in result.data
    assert b"GPSLatitude" not in result.data


def test_orientation_is_applied_to_the_pixels() -> None:
    """A 40x20 image with orientation 6 (rotate 90 degrees clockwise) comes out 20x40."""
    result = process_image(samples.jpeg(40, 20, orientation=6), "image/jpeg")
    assert (result.width, result.height) == (20, 40)
    image = reopen(result.data).convert("RGB")
    assert image.size == (20, 40)
    assert len(image.getexif()) == 0
    # The stored left (red) half becomes the top after a clockwise turn.
    assert near(image.getpixel((10, 5)), samples.RED)  # type: ignore[arg-type]
    assert near(image.getpixel((10, 35)), samples.BLUE)  # type: ignore[arg-type]


def test_png_loses_text_chunks_and_exif() -> None:
    """tEXt, iTXt and eXIf chunks are not written back."""
    source = reopen(samples.png())
    assert source.info.get("Comment") == "taken at home"
    result = process_image(samples.png(), "image/png")
    image = reopen(result.data)
    assert image.format == "PNG"
    assert_no_metadata(image)
    assert getattr(image, "text", {}) == {}
    assert b"tEXt" not in result.data and b"iTXt" not in result.data
    assert b"eXIf" not in result.data


def test_icc_profile_is_kept() -> None:
    """The colour profile survives re-encoding, in the image and its thumbnails."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    samples.halves(40, 20).save(
        out, "JPEG", icc_profile=icc, exif=samples.exif_with_gps().tobytes()
    )
    result = process_image(out.getvalue(), "image/jpeg")
    assert reopen(result.data).info.get("icc_profile") == icc
    assert reopen(result.thumbnails[0].data).info.get("icc_profile") == icc


def test_animated_gif_keeps_its_frames_and_drops_its_comment() -> None:
    """An animated GIF stays animated, with its frame timings, without its comment."""
    result = process_image(samples.gif(frames=3), "image/gif")
    image = Image.open(io.BytesIO(result.data))
    assert image.format == "GIF"
    assert getattr(image, "n_frames", 1) == 3
    assert b"secret comment" not in result.data
    assert image.info.get("duration") == 80


def test_animation_over_the_pixel_budget_keeps_only_its_first_frame() -> None:
    """Frames that together exceed max_pixels are cut to the first rather than refused."""
    result = process_image(samples.gif(frames=3), "image/gif", max_pixels=24 * 16 * 2)
    image = Image.open(io.BytesIO(result.data))
    assert getattr(image, "n_frames", 1) == 1


def test_animated_webp_stays_animated_without_exif() -> None:
    """An animated WebP keeps its frames and loses its EXIF."""
    result = process_image(samples.webp(frames=3), "image/webp")
    image = Image.open(io.BytesIO(result.data))
    assert image.format == "WEBP"
    assert getattr(image, "n_frames", 1) == 3
    assert_no_metadata(image)
    assert b"EXIF" not in result.data


def test_still_webp_loses_exif_and_lossless_stays_lossless() -> None:
    """A still WebP is stripped; a lossless one is re-encoded lossless."""
    lossy = process_image(samples.webp(), "image/webp")
    assert_no_metadata(reopen(lossy.data))
    assert b"EXIF" not in lossy.data
    lossless = process_image(samples.webp(lossless=True), "image/webp")
    assert b"VP8L" in lossless.data[:64]


def test_thumbnails_fit_their_size_keeping_the_aspect_ratio() -> None:
    """Each thumbnail's longest side is the named size."""
    result = process_image(samples.jpeg(2000, 1000), "image/jpeg")
    sizes = {t.size: (t.width, t.height) for t in result.thumbnails}
    assert sizes == {"small": (320, 160), "large": (1280, 640)}
    for thumb in result.thumbnails:
        image = reopen(thumb.data)
        assert image.size == (thumb.width, thumb.height)
        assert thumb.content_type == "image/jpeg" and image.format == "JPEG"
        assert_no_metadata(image)


def test_thumbnails_are_never_upscaled() -> None:
    """An image smaller than a thumbnail size keeps its own size."""
    result = process_image(samples.jpeg(40, 20), "image/jpeg", thumbnail_sizes={"small": 320})
    (thumb,) = result.thumbnails
    assert (thumb.size, thumb.width, thumb.height) == ("small", 40, 20)


def test_thumbnails_with_alpha_are_webp() -> None:
    """Transparency picks WebP for thumbnails; everything else is JPEG."""
    result = process_image(samples.png(mode="RGBA"), "image/png")
    for thumb in result.thumbnails:
        assert thumb.content_type == "image/webp"
        assert reopen(thumb.data).mode == "RGBA"
    assert process_image(samples.png(), "image/png").thumbnails[0].content_type == "image/jpeg"


def test_blurhash_is_deterministic_and_four_by_three() -> None:
    """The same image gives the same 4x3 hash every time."""
    first = process_image(samples.jpeg(), "image/jpeg").blurhash
    second = process_image(samples.jpeg(), "image/jpeg").blurhash
    assert first == second
    assert len(first) == 4 + 2 * 4 * 3
    assert blurhash.components(first) == (4, 3)


def test_blurhash_of_a_single_pixel_matches_the_reference_encoding() -> None:
    """One red pixel, 1x1 components: size flag 0, no AC, DC 0xFF0000 in base 83 ("TI:j")."""
    assert blurhash.encode([(255, 0, 0)], 1, 1, 1, 1) == "00TI:j"


def test_blurhash_of_white_then_black_matches_the_reference_algorithm() -> None:
    """A 2x1 image (white, black) with 2x1 components, worked through by hand.

    Size flag (2-1) + 0*9 = 1 -> "1". Linear light 1 and 0: DC = 0.5, sRGB 188 = 0xBCBCBC =
    12369084 -> "Lqe9". The one AC term: 2/2 * (1*cos 0 + 0*cos(pi/2)) = 1.0 per channel; the
    quantised maximum floor(1.0*166 - 0.5) clamps to 82 -> "~", so maximum = 83/166 = 0.5; each
    channel sqrt(1.0/0.5)*9 + 9.5 clamps to 18, 18*361 + 18*19 + 18 = 6858 -> "~q"."""
    assert blurhash.encode([(255, 255, 255), (0, 0, 0)], 2, 1, 2, 1) == "1~Lqe9~q"


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (12, 200, 99), (128, 64, 3)])
def test_blurhash_dc_term_carries_a_solid_colour_exactly(colour: tuple[int, int, int]) -> None:
    """A solid image's average colour decodes back exactly."""
    image = Image.new("RGB", (16, 12), colour)
    hash_ = blurhash.encode(image, 16, 12, 4, 3)
    assert blurhash.average_colour(hash_) == colour


def test_blurhash_decodes_to_roughly_the_image() -> None:
    """Decoding the hash of a red/blue image gives red on the left and blue on the right."""
    image = samples.halves(32, 16)
    pixels = blurhash.decode(blurhash.encode(image, 32, 16, 4, 3), 32, 16)
    assert near(pixels[8 * 32 + 2], samples.RED, 60)
    assert near(pixels[8 * 32 + 29], samples.BLUE, 60)


def test_blurhash_rejects_bad_component_counts() -> None:
    """Components must be 1..9 on each axis."""
    with pytest.raises(ValueError):
        blurhash.encode([(0, 0, 0)], 1, 1, 10, 1)


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims the given size, with a single tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def rejection(data: bytes, content_type: str, **kwargs: int) -> str:
    with pytest.raises(MediaRejectedError) as caught:
        process_image(data, content_type, **kwargs)  # type: ignore[arg-type]
    return caught.value.reason


def test_decompression_bomb_is_too_large() -> None:
    """A header claiming billions of pixels is refused before decoding."""
    assert rejection(png_header_claiming(100_000, 100_000), "image/png") == "too_large"


def test_image_over_max_pixels_is_too_large() -> None:
    """The pixel budget is the caller's, not Pillow's."""
    assert rejection(samples.jpeg(200, 100), "image/jpeg", max_pixels=10_000) == "too_large"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"definitely not an image", "image/png"),
        (samples.pdf(), "image/jpeg"),
        (samples.jpeg(400, 300)[:600], "image/jpeg"),
        (samples.png(300, 200)[:-40], "image/png"),
        (png_header_claiming(64, 64), "image/png"),
    ],
    ids=["garbage", "pdf", "truncated-jpeg", "truncated-png", "short-png-data"],
)
def test_garbage_and_truncated_data_is_undecodable(data: bytes, content_type: str) -> None:
    """Bytes no decoder accepts, or that end early, are refused as undecodable."""
    assert rejection(data, content_type) == "undecodable"


def test_declared_type_must_match_the_decoded_format() -> None:
    """PNG bytes processed as a JPEG are a type mismatch."""
    assert rejection(samples.png(), "image/jpeg") == "type_mismatch"


def test_non_image_types_are_unsupported() -> None:
    """Only IMAGE_TYPES are processed."""
    assert IMAGE_TYPES == {"image/jpeg", "image/png", "image/gif", "image/webp"}
    assert rejection(samples.pdf(), "application/pdf") == "unsupported_type"


def test_large_noisy_jpeg_is_processed() -> None:
    """A 4000x3000, ~5 MiB photo goes through whole (the time is printed, not asserted)."""
    data = samples.noisy_jpeg()
    started = time.perf_counter()
    result: ProcessedImage = process_image(data, "image/jpeg")
    elapsed = time.perf_counter() - started
    print(f"\nprocessed {len(data) / 2**20:.1f} MiB 4000x3000 JPEG in {elapsed:.2f}s")
    assert (result.width, result.height) == (4000, 3000)
    assert {t.size: t.width for t in result.thumbnails} == {"small": 320, "large": 1280}
    assert_no_metadata(reopen(result.data))


def test_apng_stays_animated_without_text_chunks() -> None:
    """An animated PNG keeps its frames and loses its text chunks."""
    result = process_image(samples.apng(), "image/png")
    image = Image.open(io.BytesIO(result.data))
    assert image.format == "PNG"
    assert getattr(image, "n_frames", 1) == 3
    assert b"tEXt" not in result.data


def test_multi_picture_jpeg_keeps_its_primary_image_as_jpeg() -> None:
    """An MPO is a JPEG: stored as a single oriented JPEG without EXIF."""
    source = Image.open(io.BytesIO(samples.mpo()))
    assert source.format == "MPO" and getattr(source, "n_frames", 1) == 2
    result = process_image(samples.mpo(), "image/jpeg")
    image = reopen(result.data)
    assert image.format == "JPEG"
    assert (result.width, result.height) == (20, 40)
    assert_no_metadata(image)


def test_animation_frames_are_all_oriented() -> None:
    """The EXIF orientation of an animated WebP turns every frame."""
    out = io.BytesIO()
    frames = [samples.halves(40, 20), samples.halves(40, 20)]
    frames[1].paste((20, 200, 20), (30, 14, 40, 20))  # identical frames would be merged
    exif = samples.exif_with_gps(6).tobytes()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], exif=exif, duration=50)
    result = process_image(out.getvalue(), "image/webp")
    image = Image.open(io.BytesIO(result.data))
    assert getattr(image, "n_frames", 1) == 2
    for index in range(2):
        image.seek(index)
        assert image.size == (20, 40)
        assert near(image.convert("RGB").getpixel((10, 5)), samples.RED)  # type: ignore[arg-type]


def test_sixteen_bit_greyscale_thumbnails_keep_their_brightness() -> None:
    """A 16-bit PNG's thumbnail is scaled to 8 bits, not clipped to white."""
    out = io.BytesIO()
    Image.new("I;16", (50, 40), 32768).save(out, "PNG")
    result = process_image(out.getvalue(), "image/png")
    thumb = reopen(result.thumbnails[0].data)
    assert abs(int(thumb.convert("L").getpixel((5, 5))) - 128) <= 3  # type: ignore[arg-type]
    assert near(blurhash.average_colour(result.blurhash), (128, 128, 128), 3)


@pytest.mark.parametrize("frames", [1, 2, 7])
def test_gif_frames_are_counted_from_the_bytes(frames: int) -> None:
    """The block walk finds as many frames as Pillow decodes."""
    from media_service.processing.images import _gif_frame_count

    data = samples.gif(frames=frames)
    assert _gif_frame_count(data) == getattr(Image.open(io.BytesIO(data)), "n_frames", 1)
    assert _gif_frame_count(data) == frames
