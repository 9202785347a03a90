"""Sniffing names what the bytes are, whatever the upload claims to be."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from media_service.processing.sniff import allowed, is_executable, sniff
from tests.media import samples

SAMPLES: list[tuple[Callable[[], bytes], str]] = [
    (samples.jpeg, "image/jpeg"),
    (samples.png, "image/png"),
    (samples.gif, "image/gif"),
    (samples.webp, "image/webp"),
    (samples.heic, "image/heic"),
    (samples.pdf, "application/pdf"),
    (samples.mp4, "video/mp4"),
    (samples.mp3, "audio/mpeg"),
    (samples.zip_archive, "application/zip"),
    (samples.elf, "application/x-elf"),
    (samples.pe, "application/x-msdownload"),
    (samples.mach_o, "application/x-mach-binary"),
    (samples.shell_script, "text/x-shellscript"),
    (samples.text, "text/plain"),
    (lambda: samples.EICAR, "text/plain"),
]


@pytest.mark.parametrize(("build", "expected"), SAMPLES, ids=[m for _, m in SAMPLES])
def test_sniffs_each_sample_from_its_bytes(build: Callable[[], bytes], expected: str) -> None:
    """Every sample is named by its content."""
    assert sniff(build()) == expected


def test_an_elf_declared_as_png_is_still_an_elf() -> None:
    """The declared type plays no part: sniff sees only bytes."""
    declared = "image/png"
    mime = sniff(samples.elf())
    assert mime == "application/x-elf" != declared
    assert is_executable(mime)


def test_unknown_binary_and_empty_bytes_are_octet_stream() -> None:
    """Bytes nothing recognises, and no bytes at all, are application/octet-stream."""
    assert sniff(bytes(range(256)) * 4) == "application/octet-stream"
    assert sniff(b"") == "application/octet-stream"


def test_text_with_a_nul_or_bad_utf8_is_not_text() -> None:
    """A NUL byte or invalid UTF-8 makes the bytes binary."""
    assert sniff(b"hello\0world") == "application/octet-stream"
    assert sniff(b"caf\xe9 latin-1") == "application/octet-stream"


def test_long_text_cut_inside_a_character_by_the_probe_is_text() -> None:
    """Only the start of a long upload is decoded; a character split there does not matter."""
    data = ("é" * 40_000).encode()
    assert sniff(data) == "text/plain"


def test_java_class_is_not_taken_for_fat_mach_o() -> None:
    """0xCAFEBABE followed by a class-file version is not a universal binary."""
    java_class = b"\xca\xfe\xba\xbe\x00\x00\x00\x41" + bytes(32)
    fat_mach_o = b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + bytes(32)
    assert sniff(java_class) != "application/x-mach-binary"
    assert sniff(fat_mach_o) == "application/x-mach-binary"


def test_executable_types() -> None:
    """Native code and scripts are executable; media and text are not."""
    for mime in ("application/x-elf", "application/x-msdownload", "application/x-mach-binary"):
        assert is_executable(mime)
    assert is_executable("text/x-shellscript")
    assert is_executable("application/x-executable")
    assert not is_executable("image/png")
    assert not is_executable("text/plain")


def test_allow_list_matches_families_and_exact_types() -> None:
    """Entries are exact types or "family/*", compared without case or parameters."""
    allow = ["image/*", "application/pdf"]
    assert allowed("image/webp", allow)
    assert allowed("Image/PNG", allow)
    assert allowed("application/pdf", allow)
    assert allowed("text/plain; charset=utf-8", ["text/plain"])
    assert not allowed("application/zip", allow)
    assert not allowed("imagex/png", allow)
    assert not allowed("video/mp4", [])
    assert allowed("video/mp4", ["*/*"])


def test_animated_png_sniffs_as_png() -> None:
    """APNG is a PNG to every decoder, so it is named image/png."""
    assert sniff(samples.apng()) == "image/png"
