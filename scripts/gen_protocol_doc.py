"""Writes docs/protocol.md: every WebSocket frame and field, from the comments in protos/.

    python scripts/gen_protocol_doc.py            # rewrite docs/protocol.md
    python scripts/gen_protocol_doc.py --check    # exit 1 if docs/protocol.md is stale

The descriptors (with their comments) come from compiling protos/ with grpc_tools' protoc
(--include_source_info); the JSON examples are the proto3 JSON of sample messages built with
the generated classes in gen/, so they parse as the gateway parses frames. Sample values are
placeholders chosen from each field's name and type.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
OUTPUT = ROOT / "docs" / "protocol.md"
GATEWAY = "chatmesh.gateway.v1"
# ServerFrame cases the server pushes on its own (empty request_id).
PUSHED = {"event", "presence_event", "typing_event"}
# Nested messages deeper than this are left empty in examples (keeps them short).
MAX_EXAMPLE_DEPTH = 4

FieldProto = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    FieldProto.TYPE_DOUBLE: "double",
    FieldProto.TYPE_FLOAT: "float",
    FieldProto.TYPE_INT64: "int64",
    FieldProto.TYPE_UINT64: "uint64",
    FieldProto.TYPE_INT32: "int32",
    FieldProto.TYPE_FIXED64: "fixed64",
    FieldProto.TYPE_FIXED32: "fixed32",
    FieldProto.TYPE_BOOL: "bool",
    FieldProto.TYPE_STRING: "string",
    FieldProto.TYPE_BYTES: "bytes",
    FieldProto.TYPE_UINT32: "uint32",
    FieldProto.TYPE_SFIXED32: "sfixed32",
    FieldProto.TYPE_SFIXED64: "sfixed64",
    FieldProto.TYPE_SINT32: "sint32",
    FieldProto.TYPE_SINT64: "sint64",
}
# Sample strings by field name; other strings get a placeholder from their name.
_SAMPLE_STRINGS = {
    "conversation_id": "01M8J5X9TFP6M12MRM33QMMR1Q",
    "message_id": "01M8J5X9ZN96BYQ3CRS30WV27K",
    "media_id": "01M8J5XA4Q1S6ZV0H2N3CC4M7T",
    "user_id": "bob",
    "sender_id": "alice",
    "actor_id": "alice",
    "created_by": "alice",
    "peer_user_id": "bob",
    "device_id": "phone",
    "request_id": "r1",
    "token": "<jwt>",
    "body": "hello",
    "title": "team",
    "client_msg_id": "m-1",
    "content_type": "image/png",
    "file_name": "cat.png",
    "query": "lunch",
    "url": "https://media.example/upload/01M8J5XA4Q1S6ZV0H2N3CC4M7T",
    "page_token": "",
    "next_page_token": "",
    "attachments": "01M8J5XA4Q1S6ZV0H2N3CC4M7T",
    "thumbnails": "small",
    "variant": "small",
    "mentions": "bob",
    "member_ids": "bob",
    "user_ids": "bob",
    "revoked_conversation_ids": "01M8J5X9TFP6M12MRM33QMMR1Q",
    "custom_text": "at lunch",
    "blurhash": "LEHV6nWB2yk8pyo0adR*.7kCMdnj",
}
# Numbers by field name (0 leaves the field out); others are 1.
_SAMPLE_NUMBERS = {
    "seq": 2,
    "last_seq": 2,
    "message_seq": 2,
    "last_read_seq": 2,
    "last_delivered_seq": 2,
    "before_seq": 0,
    "after_seq": 0,
    "reply_to_seq": 0,
    "limit": 20,
    "page_size": 50,
    "size_bytes": 48213,
    "width": 640,
    "height": 480,
    "member_count": 2,
    "heartbeat_interval_ms": 20000,
    "max_frame_bytes": 65536,
    "retry_after_ms": 1000,
}
# Enum values by enum (a meaningful case rather than the first).
_SAMPLE_ENUMS = {"chatmesh.gateway.v1.ErrorCode": "ERROR_CODE_RESOURCE_EXHAUSTED"}
# Booleans shown true; the others stay false (left out), as in most real frames.
_SAMPLE_TRUE = {"typing", "has_more", "created"}


@dataclass
class Comments:
    """The comments protoc kept, by descriptor path."""

    by_path: dict[tuple[int, ...], str]

    def get(self, path: tuple[int, ...]) -> str:
        return self.by_path.get(path, "")


@dataclass
class MessageDoc:
    full_name: str
    proto: descriptor_pb2.DescriptorProto
    path: tuple[int, ...]
    comments: Comments
    file: str


@dataclass
class EnumDoc:
    full_name: str
    proto: descriptor_pb2.EnumDescriptorProto
    path: tuple[int, ...]
    comments: Comments


def _clean(comment: str) -> str:
    lines = [line.strip() for line in comment.strip().splitlines()]
    return " ".join(line for line in lines if line)


def _descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "protos.bin"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTOS}",
                f"-I{well_known}",
                "--include_source_info",
                "--include_imports",
                f"--descriptor_set_out={out}",
                *files,
            ],
            check=True,
        )
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _index(
    files: descriptor_pb2.FileDescriptorSet,
) -> tuple[dict[str, MessageDoc], dict[str, EnumDoc]]:
    messages: dict[str, MessageDoc] = {}
    enums: dict[str, EnumDoc] = {}
    for file in files.file:
        comments = Comments(
            {
                tuple(loc.path): _clean(loc.leading_comments or loc.trailing_comments)
                for loc in file.source_code_info.location
                if loc.leading_comments or loc.trailing_comments
            }
        )

        def walk(
            proto: descriptor_pb2.DescriptorProto,
            prefix: str,
            path: tuple[int, ...],
            comments: Comments = comments,
            name: str = file.name,
        ) -> None:
            full = f"{prefix}.{proto.name}"
            messages[full] = MessageDoc(full, proto, path, comments, name)
            for i, nested in enumerate(proto.nested_type):
                walk(nested, full, (*path, 3, i))
            for i, enum in enumerate(proto.enum_type):
                enums[f"{full}.{enum.name}"] = EnumDoc(
                    f"{full}.{enum.name}", enum, (*path, 4, i), comments
                )

        for i, message in enumerate(file.message_type):
            walk(message, file.package, (4, i))
        for i, enum in enumerate(file.enum_type):
            enums[f"{file.package}.{enum.name}"] = EnumDoc(
                f"{file.package}.{enum.name}", enum, (5, i), comments
            )
    return messages, enums


def _anchor(full_name: str) -> str:
    return "#" + "".join(c for c in full_name.lower() if c.isalnum() or c in "-_")


class Writer:
    """Renders the reference: the two frames, then each message and enum they reach, once."""

    def __init__(self, messages: dict[str, MessageDoc], enums: dict[str, EnumDoc]) -> None:
        self.messages = messages
        self.enums = enums
        self.queue: list[str] = []
        self.enum_queue: list[str] = []
        client = messages[f"{GATEWAY}.ClientFrame"].proto
        self.client_cases = {f.name for f in client.field if f.HasField("oneof_index")}

    def _type(self, field: FieldProto) -> str:
        if field.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_ENUM):
            name = field.type_name.lstrip(".")
            entry = self.messages.get(name)
            if entry is not None and entry.proto.options.map_entry:
                key, value = entry.proto.field
                return f"map<{self._type(key)}, {self._type(value)}>"
            if name.startswith("google.protobuf."):
                return f"`{name}`"
            queue = self.queue if field.type == FieldProto.TYPE_MESSAGE else self.enum_queue
            if name not in queue:
                queue.append(name)
            label = f"[`{name.rsplit('.', 1)[1]}`]({_anchor(name)})"
        else:
            label = f"`{_SCALARS[field.type]}`"
        if field.label == FieldProto.LABEL_REPEATED:
            return f"repeated {label}"
        return label

    def fields_table(self, doc: MessageDoc, skip_oneof: int | None = None) -> list[str]:
        rows = []
        for i, field in enumerate(doc.proto.field):
            if skip_oneof is not None and field.HasField("oneof_index"):
                if field.oneof_index == skip_oneof:
                    continue
            comment = doc.comments.get((*doc.path, 2, i))
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneof = doc.proto.oneof_decl[field.oneof_index].name
                comment = f"(one of `{oneof}`) {comment}".strip()
            if field.proto3_optional:
                comment = f"(optional) {comment}".strip()
            rows.append(
                f"| `{field.json_name}` | {field.number} | {self._type(field)} | {comment} |"
            )
        if not rows:
            return ["No fields: `{}`."]
        return ["| JSON name | number | type | meaning |", "|---|---|---|---|", *rows]

    def frames(self, frame: str, sample: type[Message], client: bool) -> list[str]:
        doc = self.messages[f"{GATEWAY}.{frame}"]
        oneof = next(i for i, o in enumerate(doc.proto.oneof_decl) if o.name == "frame")
        lines = [f"## {frame}", "", doc.comments.get(doc.path), ""]
        lines += self.fields_table(doc, skip_oneof=oneof)
        lines += ["", "Exactly one of the `frame` cases below is set.", ""]
        for i, field in enumerate(doc.proto.field):
            if not field.HasField("oneof_index") or field.oneof_index != oneof:
                continue
            lines += [f"### `{field.json_name}` ({field.number})", ""]
            comment = doc.comments.get((*doc.path, 2, i))
            if not comment and not client and field.name in self.client_cases:
                comment = f"Answers a `{field.json_name}` client frame."
            carried = f"Carries {self._type(field)}."
            pushed = not client and field.name in PUSHED
            if pushed:
                carried += " Pushed by the server: its `requestId` is empty."
            lines += [f"{comment} {carried}".strip(), ""]
            example = sample(request_id="" if pushed else "r1")
            payload = getattr(example, field.name)
            _fill(payload, payload.DESCRIPTOR, 0)
            payload.SetInParent()
            text = json.dumps(json_format.MessageToDict(example), ensure_ascii=False)
            lines += ["```json", text, "```", ""]
        return lines

    def reached(self) -> Iterator[str]:
        """Messages and enums, in the order the frames first name them."""
        done: set[str] = set()
        while len(done) < len(self.queue):
            for name in list(self.queue):
                if name in done:
                    continue
                done.add(name)
                doc = self.messages[name]
                yield from self._message(doc)

    def _message(self, doc: MessageDoc) -> Iterator[str]:
        yield f"### {doc.full_name}"
        yield ""
        comment = doc.comments.get(doc.path)
        if comment:
            yield comment
            yield ""
        yield f"From `protos/{doc.file}`."
        yield ""
        yield from self.fields_table(doc)
        yield ""

    def enums_section(self) -> Iterator[str]:
        for name in self.enum_queue:
            doc = self.enums[name]
            yield f"### {doc.full_name}"
            yield ""
            comment = doc.comments.get(doc.path)
            if comment:
                yield comment
                yield ""
            yield "| value | number | meaning |"
            yield "|---|---|---|"
            for i, value in enumerate(doc.proto.value):
                meaning = doc.comments.get((*doc.path, 2, i))
                yield f"| `{value.name}` | {value.number} | {meaning} |"
            yield ""


def _fill(message: Message, desc: Descriptor, depth: int) -> None:
    """Sets every field of `message` to a sample value (the first case of each oneof)."""
    if desc.full_name == "google.protobuf.Timestamp":
        message.FromJsonString("2026-11-28T22:55:12Z")  # type: ignore[attr-defined]
        return
    if desc.full_name == "google.protobuf.Duration":
        message.FromJsonString("30s")  # type: ignore[attr-defined]
        return
    seen_oneofs: set[str] = set()
    for field in desc.fields:
        oneof = field.containing_oneof
        # A proto3 `optional` field is a oneof of its own, so it is filled too.
        if oneof is not None:
            if oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(oneof.name)
        _fill_field(message, field, depth)


def _fill_field(message: Message, field: FieldDescriptor, depth: int) -> None:
    repeated = field.is_repeated
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:
            key = "key" if field.name != "headers" else "Content-Type"
            getattr(message, field.name)[key] = "value"
            return
        if depth >= MAX_EXAMPLE_DEPTH:
            return
        child = getattr(message, field.name).add() if repeated else getattr(message, field.name)
        _fill(child, field.message_type, depth + 1)
        if not repeated:
            child.SetInParent()
        return
    value = _scalar(field)
    if repeated:
        getattr(message, field.name).append(value)
    else:
        setattr(message, field.name, value)


def _scalar(field: FieldDescriptor) -> Any:
    if field.enum_type is not None:
        chosen = _SAMPLE_ENUMS.get(field.enum_type.full_name)
        if chosen is not None:
            return field.enum_type.values_by_name[chosen].number
        values = [v.number for v in field.enum_type.values if v.number != 0]
        return values[0] if values else 0
    if field.type == FieldDescriptor.TYPE_STRING:
        return _SAMPLE_STRINGS.get(field.name, field.name.replace("_", "-"))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"\x01\x02"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return field.name in _SAMPLE_TRUE
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 1.5
    return _SAMPLE_NUMBERS.get(field.name, 1)


def render() -> str:
    messages, enums = _index(_descriptor_set())
    gateway = importlib.import_module("chatmesh.gateway.v1.gateway_pb2")
    writer = Writer(messages, enums)
    lines = [
        "# WebSocket frames: the reference",
        "",
        "<!-- Generated by scripts/gen_protocol_doc.py from the comments in protos/; do not edit."
        " `make check-gen` fails when it is stale. -->",
        "",
        "Every frame is a `ClientFrame` (app to gateway) or a `ServerFrame` (gateway to app) of"
        " `protos/chatmesh/gateway/v1/gateway.proto`: proto3 JSON on text frames, binary"
        " protobuf on binary frames. The rules around them (connecting, authentication, order,"
        " resume, limits, close codes) are in [websocket.md](websocket.md).",
        "",
        "JSON uses the lowerCamelCase names below (snake_case is accepted too), enum values by"
        " name, 64-bit integers as strings and timestamps in RFC 3339; fields at their default"
        " are left out. The examples are the proto3 JSON of sample messages: their values are"
        " placeholders, and each oneof shows its first case.",
        "",
    ]
    lines += writer.frames("ClientFrame", gateway.ClientFrame, client=True)
    lines += writer.frames("ServerFrame", gateway.ServerFrame, client=False)
    lines += ["## Messages the frames carry", ""]
    lines += list(writer.reached())
    lines += ["## Enums", ""]
    lines += list(writer.enums_section())
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/protocol.md is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if OUTPUT.exists() and OUTPUT.read_text() == text:
            print("check-gen: docs/protocol.md is up to date with protos/.")
            return 0
        print(
            "check-gen: docs/protocol.md is stale w.r.t. protos/;"
            " run 'python scripts/gen_protocol_doc.py'.",
            file=sys.stderr,
        )
        return 1
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
