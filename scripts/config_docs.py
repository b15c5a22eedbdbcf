"""docs/configuration.md's reference, rendered from the pydantic models of streamer/config.py: one table
per section, each key's type, limits, default and description as the model declares them.

The reference stands between `<!-- config:reference -->` and `<!-- /config:reference -->`; text outside
the markers is left alone.

    python scripts/config_docs.py           # rewrite the reference in docs/configuration.md
    python scripts/config_docs.py --check   # exit 1 when it is out of date (make lint)
"""

from __future__ import annotations

import argparse
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this tree's streamer, not an installed one

from streamer.config import Config  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"
REGION = re.compile(r"(<!-- config:reference -->\n).*?(<!-- /config:reference -->)", re.S)
LIMITS = {"gt": "over", "ge": "at least", "lt": "under", "le": "at most", "min_length": "at least", "max_length": "at most"}


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The section model a field holds (`X`, `X | None`, `list[X]`), or None for a plain value."""
    args = typing.get_args(annotation) or (annotation,)
    for a in args:
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"map {type_name(args[0])} -> {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def limits(field: FieldInfo) -> str:
    out = []
    for m in field.metadata:
        for attr, word in LIMITS.items():
            if getattr(m, attr, None) is not None:
                out.append(f"{word} {getattr(m, attr)}" + (" items" if attr.endswith("length") else ""))
        if getattr(m, "pattern", None):
            out.append(f"`{m.pattern}`")
    return ", ".join(out)


def default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


def cell(text: str) -> str:
    """Text for a table cell: `|` escaped, and `<`, outside code spans, so `<id>` is not taken for HTML."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def key_path(path: str, name: str, annotation: Any) -> str:
    """A key's dotted path; `[]` after a list of sections (`cameras[]`)."""
    return (f"{path}.{name}" if path else name) + ("[]" if typing.get_origin(annotation) is list else "")


def section(path: str, model: type[BaseModel]) -> list[str]:
    """The table of one section, then the tables of the sections inside it."""
    lines = [f"### `{path}`", ""]
    doc = (model.__doc__ or "").strip()
    if doc and model.__doc__ != BaseModel.__doc__:
        lines += [doc, ""]
    lines += ["| key | type | limits | default | what it is |", "|---|---|---|---|---|"]
    inner = []
    for name, field in model.model_fields.items():
        sub = model_of(field.annotation)
        kind = type_name(field.annotation)
        lines.append(f"| `{name}` | {cell(kind)} | {cell(limits(field))} | {cell(default(field))} | "
                     f"{cell(field.description or '')} |")
        if sub is not None:
            inner.append((key_path(path, name, field.annotation), sub))
    lines.append("")
    for sub_path, sub in inner:
        lines += section(sub_path, sub)
    return lines


def reference() -> str:
    lines = ["| section | what it is |", "|---|---|"]
    for name, field in Config.model_fields.items():
        lines.append(f"| [`{name}`](#{name}) | {cell(field.description or '')} |")
    lines.append("")
    for name, field in Config.model_fields.items():
        sub = model_of(field.annotation)
        assert sub is not None, f"{name}: every top-level key is a section"
        lines += section(key_path("", name, field.annotation), sub)
    return "\n".join(lines)


def render(text: str) -> str | None:
    """`text` with its reference region rendered anew; None when it has no region."""
    if not REGION.search(text):
        return None
    body = reference() + "\n"
    return REGION.sub(lambda m: m.group(1) + body + m.group(2), text)


def main(argv: list[str] | None = None, doc: Path = DOC) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check that docs/configuration.md is in sync")
    args = p.parse_args(argv)
    text = doc.read_text()
    new = render(text)
    if new is None:
        print(f"{doc}: no <!-- config:reference --> ... <!-- /config:reference --> region", file=sys.stderr)
        return 1
    if new == text:
        return 0
    if args.check:
        print(f"{doc} is out of date with streamer/config.py: run python scripts/config_docs.py", file=sys.stderr)
        return 1
    doc.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
