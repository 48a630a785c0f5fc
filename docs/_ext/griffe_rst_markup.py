"""Griffe extension: the reST markup of this package's docstrings, rendered as Markdown.

The provider's docstrings are Sphinx style. Griffe's Sphinx parser reads the ``:param x:`` fields,
but leaves the prose alone, where reST markup would render wrongly as Markdown:

* ``.. note::`` (or warning, tip, ...) followed by an indented block would become a code block;
  it becomes a Material admonition (``!!! note``).
* ``:class:`X```, ``:meth:`x```, ``:func:`x```, ``:data:`X```, ``:attr:`x```, ``:mod:`x``` and
  ``:exc:`X``` (with an optional ``~``) become optional cross-references: a link when the target
  is rendered somewhere in the site, plain code otherwise. Short names are resolved against the
  object's own class, its module, then every uniquely named object of the package.
* A paragraph ending in ``::`` followed by an indented block (a reST literal block) becomes a fenced
  code block, and the ``::`` a single colon.

Only the docstring text changes; nothing is imported and the package is not touched.
Configured in ``mkdocs.yml`` under the python handler's ``extensions``.
"""

from __future__ import annotations

import html
import re
import textwrap
from typing import Any

import griffe

_ADMONITION = re.compile(
    r"^(?P<indent>[ \t]*)\.\. (?P<kind>note|warning|tip|important|caution|danger|hint|seealso)::"
    r"[ \t]*(?P<rest>.*)$"
)
_ROLE = re.compile(r":(?P<role>class|meth|func|data|attr|mod|exc|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")
_ADMONITION_KIND = {"seealso": "info", "hint": "tip", "caution": "warning", "important": "warning"}


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block_end(lines: list[str], start: int, base_indent: int) -> int:
    """Index after the last line of the indented block starting at ``start`` (blank lines allowed inside)."""
    end = start
    index = start
    while index < len(lines):
        line = lines[index]
        if line.strip():
            if _indent_of(line) <= base_indent:
                break
            end = index + 1
        index += 1
    return end


def _convert_admonitions(lines: list[str]) -> list[str]:
    out: list[str] = []
    index = 0
    while index < len(lines):
        match = _ADMONITION.match(lines[index])
        if not match:
            out.append(lines[index])
            index += 1
            continue
        indent = len(match["indent"])
        end = _block_end(lines, index + 1, indent)
        body = [match["rest"]] if match["rest"].strip() else []
        body += textwrap.dedent("\n".join(lines[index + 1 : end])).strip("\n").splitlines()
        kind = _ADMONITION_KIND.get(match["kind"], match["kind"])
        out.append(" " * indent + f"!!! {kind}")
        out += [(" " * (indent + 4) + line) if line.strip() else "" for line in body]
        out.append("")
        index = end
    return out


def _convert_literal_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".. ") and line.strip() != "::":
            start = index + 1
            while start < len(lines) and not lines[start].strip():
                start += 1
            if start < len(lines) and _indent_of(lines[start]) > _indent_of(line):
                end = _block_end(lines, start, _indent_of(line))
                code = textwrap.dedent("\n".join(lines[start:end])).strip("\n")
                language = "bash" if code.lstrip().startswith(("python -m", "$ ")) else "python"
                indent = " " * _indent_of(line)
                out.append(line.rstrip()[:-1])  # "text::" -> "text:"
                out.append("")
                out.append(f"{indent}```{language}")
                out += [(indent + code_line) if code_line.strip() else "" for code_line in code.splitlines()]
                out.append(f"{indent}```")
                out.append("")
                index = end
                continue
        out.append(line)
        index += 1
    return out


class RstMarkup(griffe.Extension):
    """Rewrite the reST markup of every docstring in the loaded package (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_name: dict[str, set[str]] = {}

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        objects = list(self._walk(pkg))
        for obj in objects:
            self._by_name.setdefault(obj.name, set()).add(obj.path)
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = self.convert(obj.docstring.value, obj)

    def _walk(self, obj: griffe.Object) -> Any:
        yield obj
        for member in obj.members.values():
            if member.is_alias:
                continue
            yield from self._walk(member)

    def convert(self, text: str, obj: griffe.Object) -> str:
        lines = text.splitlines()
        lines = _convert_admonitions(lines)
        lines = _convert_literal_blocks(lines)
        converted = "\n".join(lines)
        # roles last, and never inside fenced code
        parts = re.split(r"(```.*?```)", converted, flags=re.DOTALL)
        return "".join(
            part if part.startswith("```") else _ROLE.sub(lambda m: self._role(m, obj), part)
            for part in parts
        )

    def _role(self, match: re.Match[str], obj: griffe.Object) -> str:
        target = match["target"].strip()
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        if match["role"] in ("meth", "func"):
            shown += "()"
        identifier = self._resolve(target, obj)
        code = f"<code>{html.escape(shown)}</code>"
        return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'

    def _resolve(self, target: str, obj: griffe.Object) -> str:
        if "." in target and not target.startswith("."):
            return target
        name = target.lstrip(".")
        scopes = []
        owner: Any = obj
        while owner is not None:
            if owner.is_class or owner.is_module:
                scopes.append(owner)
            owner = owner.parent
        for scope in scopes:
            member = scope.members.get(name)
            if member is not None:
                return member.path if not member.is_alias else str(member.target_path)
        candidates = self._by_name.get(name, set())
        if len(candidates) == 1:
            return next(iter(candidates))
        return name
