"""The MIME type of an upload, read from its bytes alone: the client's declared type and the file
name are never consulted. `filetype` knows the common media signatures; executables and text are
checked here first, because filetype misses Mach-O and scripts and calls ELF by a vaguer name."""

from __future__ import annotations

from collections.abc import Sequence

import filetype  # type: ignore[import-untyped]

OCTET_STREAM = "application/octet-stream"
ELF = "application/x-elf"
PE = "application/x-msdownload"
MACH_O = "application/x-mach-binary"
SHELL_SCRIPT = "text/x-shellscript"
TEXT = "text/plain"

# Thin and 64-bit Mach-O in both byte orders.
_MACH_O_MAGICS = (
    b"\xfe\xed\xfa\xce",
    b"\xce\xfa\xed\xfe",
    b"\xfe\xed\xfa\xcf",
    b"\xcf\xfa\xed\xfe",
)
# Universal ("fat") Mach-O shares 0xCAFEBABE with Java class files; a fat header follows it with a
# small architecture count, a class file with its version (45 and up).
_FAT_MAGIC = b"\xca\xfe\xba\xbe"
_FAT_MAX_ARCHS = 30

# Every name a sniffer or a client may use for native code or a script that runs when opened.
_EXECUTABLE_TYPES = frozenset(
    {
        ELF,
        PE,
        MACH_O,
        SHELL_SCRIPT,
        "application/x-executable",
        "application/x-sharedlib",
        "application/x-dosexec",
        "application/x-msdos-program",
        "application/vnd.microsoft.portable-executable",
        "application/x-mach-o-executable",
        "application/x-sh",
        "text/x-sh",
    }
)

# filetype's names where ours differ. An animated PNG is a PNG: every PNG decoder shows its first
# frame, and image processing re-encodes its animation.
_FILETYPE_ALIASES = {"application/x-executable": ELF, "image/apng": "image/png"}

# How much of a file's start the text check decodes: enough to judge, bounded for large uploads.
_TEXT_PROBE_BYTES = 64 * 1024


def sniff(data: bytes) -> str:
    """The MIME type the bytes are, or "application/octet-stream" when nothing matches."""
    native = _sniff_executable(data)
    if native is not None:
        return native
    kind = filetype.guess(data) if data else None
    if kind is not None:
        mime = str(kind.mime)
        return _FILETYPE_ALIASES.get(mime, mime)
    if _is_text(data):
        return TEXT
    return OCTET_STREAM


def is_executable(mime: str) -> bool:
    """Whether `mime` names native code or a script (never to be stored for others to download)."""
    return _bare(mime) in _EXECUTABLE_TYPES


def allowed(mime: str, allow_list: Sequence[str]) -> bool:
    """Whether `mime` matches an entry: an exact type ("image/png"), a family ("image/*") or
    "*/*". Case and parameters (";charset=...") are ignored on both sides."""
    bare = _bare(mime)
    family = bare.split("/", 1)[0]
    for entry in allow_list:
        wanted = _bare(entry)
        if wanted in (bare, "*/*", "*"):
            return True
        if wanted.endswith("/*") and wanted[:-2] == family:
            return True
    return False


def _bare(mime: str) -> str:
    return mime.split(";", 1)[0].strip().lower()


def _sniff_executable(data: bytes) -> str | None:
    if data.startswith(b"\x7fELF"):
        return ELF
    # Any "MZ" start counts, with or without a PE header behind it: DOS executables run too, and
    # calling a text that happens to start with "MZ" an executable errs on the safe side.
    if data.startswith(b"MZ"):
        return PE
    if data[:4] in _MACH_O_MAGICS:
        return MACH_O
    if data.startswith(_FAT_MAGIC) and len(data) >= 8:
        if 0 < int.from_bytes(data[4:8], "big") <= _FAT_MAX_ARCHS:
            return MACH_O
    if data.startswith(b"#!"):
        return SHELL_SCRIPT
    return None


def _is_text(data: bytes) -> bool:
    if not data or b"\0" in data:
        return False
    probe = data[:_TEXT_PROBE_BYTES]
    try:
        probe.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the probe's end is still text.
        truncated = len(data) > len(probe) and exc.start >= len(probe) - 3
        return truncated and exc.reason == "unexpected end of data"
    return True
