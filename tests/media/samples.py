"""Sample uploads built in code (no binary fixtures): images with the metadata processing must
strip, executables' headers, and the other formats sniffing must tell apart."""

from __future__ import annotations

import io
import random
import struct
import zipfile

from PIL import ExifTags, Image
from PIL.PngImagePlugin import PngInfo

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    b'syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    b'exif:GPSLatitude="52,31.2N"/></rdf:RDF></x:xmpmeta>'
)
RED = (220, 20, 20)
BLUE = (20, 20, 220)


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    """EXIF naming a camera and a place, with the given orientation."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "ChatmeshCam"
    exif[ExifTags.Base.Model] = "Model 1"
    exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 36.0)
    return exif


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: shows which way a rotation went."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def jpeg(width: int = 40, height: int = 20, *, orientation: int = 1) -> bytes:
    """A JPEG carrying EXIF (camera, GPS, orientation), XMP and an ICC-less sRGB image."""
    out = io.BytesIO()
    halves(width, height).save(
        out, "JPEG", quality=95, exif=exif_with_gps(orientation).tobytes(), xmp=XMP
    )
    return out.getvalue()


def noisy_jpeg(width: int = 4000, height: int = 3000, *, seed: int = 7) -> bytes:
    """A large JPEG of noise: incompressible, about 5 MiB at 4000x3000."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=55, exif=exif_with_gps(1).tobytes())
    return out.getvalue()


def png(width: int = 30, height: int = 20, *, mode: str = "RGB") -> bytes:
    """A PNG with text chunks (tEXt, iTXt) and an eXIf chunk."""
    info = PngInfo()
    info.add_text("Comment", "taken at home")
    info.add_itxt("Author", "Someone Private", lang="en")
    colour = (*RED, 128) if mode == "RGBA" else RED
    out = io.BytesIO()
    Image.new(mode, (width, height), colour).save(
        out, "PNG", pnginfo=info, exif=exif_with_gps(1).tobytes()
    )
    return out.getvalue()


def gif(*, frames: int = 1, width: int = 24, height: int = 16) -> bytes:
    """A GIF with a comment; animated when `frames` > 1 (each frame a different colour)."""
    images = [
        Image.new("RGB", (width, height), (40 * i % 256, 100, 200 - 30 * i % 200)).convert("P")
        for i in range(frames)
    ]
    out = io.BytesIO()
    images[0].save(
        out,
        "GIF",
        save_all=frames > 1,
        append_images=images[1:],
        duration=[80 + 10 * i for i in range(frames)] if frames > 1 else 80,
        loop=0,
        comment=b"secret comment",
    )
    return out.getvalue()


def webp(
    *,
    frames: int = 1,
    width: int = 24,
    height: int = 16,
    alpha: bool = False,
    lossless: bool = False,
) -> bytes:
    """A WebP with EXIF; animated when `frames` > 1."""
    mode = "RGBA" if alpha else "RGB"
    images = [
        Image.new(mode, (width, height), (30 * i % 256, 90, 160, 100)[: len(mode)])
        for i in range(frames)
    ]
    out = io.BytesIO()
    images[0].save(
        out,
        "WEBP",
        save_all=frames > 1,
        append_images=images[1:],
        duration=100,
        lossless=lossless,
        exif=exif_with_gps(1).tobytes(),
    )
    return out.getvalue()


def elf() -> bytes:
    """A 64-bit little-endian ELF header of an x86-64 executable, padded."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x401000, 64, 0, 0, 64, 56, 1, 64, 0, 0
    )
    return header + bytes(64)


def pe() -> bytes:
    """A DOS MZ stub pointing at a PE header (i386 COFF)."""
    dos = bytearray(64)
    dos[0:2] = b"MZ"
    dos[0x3C:0x40] = struct.pack("<I", 64)
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x0102)
    return bytes(dos) + coff + bytes(0xE0)


def mach_o() -> bytes:
    """A 64-bit little-endian Mach-O header (x86-64 executable)."""
    return b"\xcf\xfa\xed\xfe" + struct.pack("<iiIIII", 0x01000007, 3, 2, 0, 0, 0) + bytes(32)


def shell_script() -> bytes:
    return b"#!/bin/sh\necho hello\n"


def pdf() -> bytes:
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"


def text() -> bytes:
    return "Grüße aus Köln — a plain UTF-8 note ✓\n".encode()


def mp4() -> bytes:
    """An ISO base media file: an `ftyp` box (brand isom) and an empty `mdat`."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41"
    return struct.pack(">I", 4 + len(ftyp)) + ftyp + struct.pack(">I", 8) + b"mdat"


def heic() -> bytes:
    ftyp = b"ftyp" + b"heic" + struct.pack(">I", 0) + b"mif1heic"
    return struct.pack(">I", 4 + len(ftyp)) + ftyp + bytes(16)


def mp3() -> bytes:
    """An ID3v2.3 tag followed by one MPEG-1 Layer III frame header."""
    return b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(413)


def zip_archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("note.txt", "hello")
    return out.getvalue()


def apng(*, frames: int = 3, width: int = 20, height: int = 10) -> bytes:
    """An animated PNG (acTL/fcTL/fdAT chunks) with a text chunk."""
    images = [Image.new("RGB", (width, height), (60 * i % 256, 30, 90)) for i in range(frames)]
    info = PngInfo()
    info.add_text("Comment", "taken at home")
    out = io.BytesIO()
    images[0].save(
        out, "PNG", save_all=True, append_images=images[1:], duration=100, loop=0, pnginfo=info
    )
    return out.getvalue()


def mpo() -> bytes:
    """A multi-picture JPEG (primary image and a second one), as phone cameras write."""
    first, second = halves(40, 20), Image.new("RGB", (40, 20), BLUE)
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[second], exif=exif_with_gps(6).tobytes())
    return out.getvalue()
