"""The type of an upload, from its bytes only: the file name and the declared type are the
uploader's word, which media_service never trusts."""

from __future__ import annotations

from collections.abc import Sequence

import filetype

UNKNOWN = "application/octet-stream"

# Executables and scripts: never served as anything else, whatever they were declared as.
EXECUTABLE_TYPES = frozenset(
    {
        "application/x-elf",
        "application/x-executable",
        "application/x-msdownload",
        "application/x-mach-binary",
        "application/x-sharedlib",
        "text/x-shellscript",
    }
)
_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")
_TEXT_PROBE = 64 * 1024


def _own_checks(data: bytes) -> str | None:
    """What filetype misses or names differently."""
    if data.startswith(b"\x7fELF"):
        return "application/x-elf"
    if data.startswith(b"MZ"):
        return "application/x-msdownload"
    if data[:4] in _MACHO or data.startswith(b"\xca\xfe\xba\xbe"):
        return "application/x-mach-binary"
    if data.startswith(b"#!"):
        return "text/x-shellscript"
    return None


def _is_text(data: bytes) -> bool:
    probe = data[:_TEXT_PROBE]
    if not probe or b"\x00" in probe:
        return False
    try:
        probe.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the probe's end is still text.
        return exc.start >= len(probe) - 3 and len(data) > _TEXT_PROBE
    return True


def sniff(data: bytes) -> str:
    """The MIME type the bytes are, or application/octet-stream."""
    own = _own_checks(data)
    if own is not None:
        return own
    guessed = filetype.guess_mime(data[:8192])
    if guessed == "application/x-executable":
        return "application/x-elf"
    if guessed:
        return str(guessed)
    return "text/plain" if _is_text(data) else UNKNOWN


def is_executable(mime: str) -> bool:
    return mime in EXECUTABLE_TYPES


def allowed(mime: str, allow_list: Sequence[str]) -> bool:
    """Whether `mime` matches an entry: an exact type or `major/*`. Executables never do."""
    if is_executable(mime):
        return False
    major = mime.split("/", 1)[0]
    return any(entry == mime or entry == f"{major}/*" for entry in allow_list)
