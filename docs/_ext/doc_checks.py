"""MkDocs hook: fail the (strict) build when hand-written pages drift from the code.

* ``troubleshooting.md`` must quote every error message the provider raises. The messages are read
  from the source with ``ast`` (nothing is imported): the first argument of every exception
  constructor in the modules below, the summaries in ``protocol._CODE_ERRORS``, the ``reason``,
  ``problem`` and ``summary`` strings built before a constructor call, and the trigger's timeout
  message. Every fixed piece of each (the text between placeholders, if at least 12 characters
  long) must appear on the page.
* ``reference/exceptions.md`` must name every exception class of ``exceptions.py`` in its tree.
* ``development.md``'s package diagram (the first ``mermaid`` flowchart) must have a box for every
  module of the package outside ``testing/``, and each of its arrows ``A --> B`` (or ``A -.-> B``,
  a lazy import) must be an import of module B by module A that exists in the code (module ids are
  dotted paths below the package: ``hooks.jogg``).

A miss is logged as a warning, which ``mkdocs build --strict`` turns into a failed build, naming
the file and line of the message. Configured in ``mkdocs.yml`` under ``hooks``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import get_plugin_logger

log = get_plugin_logger(__name__)

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_jogg"
#: the modules whose messages users see in task logs
MESSAGE_MODULES = tuple(
    str(path.relative_to(PACKAGE))
    for path in sorted(PACKAGE.rglob("*.py"))
    if "testing" not in path.relative_to(PACKAGE).parts
)
#: fixed pieces that never reach a user as a message of their own
NOT_SHOWN = {
    "create answer without task_id",  # the cause inside JoggCreateUncertainError, not its message
    "defer() returned",  # an assertion that cannot fire
    "PollScheduler used after it closed",  # a closed scheduler is out of the registry first
    "note without its field",  # a note the scheduler never builds: a bug, raised as such
}
#: pieces shorter than this are too generic to check ("Connection", "Jogg task")
MIN_PIECE = 12


def _pieces(node: ast.AST) -> list[str]:
    """The fixed text pieces of a string, f-string, concatenation or conditional expression."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        pieces, current = [], ""
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                current += value.value
            else:
                pieces.append(current)
                current = ""
        return [*pieces, current]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _pieces(node.left) + _pieces(node.right)
    if isinstance(node, ast.IfExp):
        return _pieces(node.body) + _pieces(node.orelse)
    return []


def _message_nodes(tree: ast.AST) -> list[ast.AST]:
    nodes: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.endswith(("Error", "Exception", "Timeout")):
                nodes.append(node.args[0])
        elif isinstance(node, ast.Assign):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if names & {"reason", "problem", "summary"}:  # parts built before the constructor call
                nodes.append(node.value)
        elif isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "_CODE_ERRORS":
            if isinstance(node.value, ast.Dict):
                nodes += [v.elts[1] for v in node.value.values if isinstance(v, ast.Tuple)]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "message":
                    nodes.append(value)
    return nodes


def expected_messages() -> list[tuple[str, str]]:
    """``(piece, "file:line")`` for every fixed piece of every message."""
    found = []
    for module in MESSAGE_MODULES:
        path = PACKAGE / module
        for node in _message_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            for piece in _pieces(node):
                piece = piece.strip(" ;,")
                if len(piece) >= MIN_PIECE and piece not in NOT_SHOWN:
                    found.append((piece, f"airflow_provider_jogg/{module}:{node.lineno}"))
    return found


def exception_classes() -> list[str]:
    tree = ast.parse((PACKAGE / "exceptions.py").read_text(encoding="utf-8"))
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def package_imports() -> tuple[set[str], set[tuple[str, str]]]:
    """The package's modules outside ``testing/`` (dotted, no ``__init__``) and who imports whom."""
    modules: dict[str, ast.AST] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if "testing" in relative.parts or path.name == "__init__.py":
            continue
        modules[".".join(relative.with_suffix("").parts)] = ast.parse(path.read_text(encoding="utf-8"))
    edges: set[tuple[str, str]] = set()
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(PACKAGE.name):
                continue
            target = (node.module or "").removeprefix(PACKAGE.name).lstrip(".")
            for alias in node.names:  # "from pkg.hooks import transfers" imports a module
                edges.add((name, f"{target}.{alias.name}".lstrip(".")))
                edges.add((name, target))
    return set(modules), edges


_ARROW = re.compile(r"^\s*([\w.]+)\s*(?:-->|-\.->)\s*([\w.]+)\s*$")
_BOX = re.compile(r"^\s*([\w.]+)\[")


def check_package_diagram(markdown: str) -> None:
    match = re.search(r"```mermaid\n(flowchart.*?)```", markdown, re.S)
    if match is None:
        log.warning("development.md: no mermaid flowchart of the package")
        return
    modules, edges = package_imports()
    boxes, arrows = set(), []
    for line in match.group(1).splitlines():
        if arrow := _ARROW.match(line):
            arrows.append((arrow.group(1), arrow.group(2)))
        elif box := _BOX.match(line):
            boxes.add(box.group(1))
    for module in sorted(modules - boxes):
        log.warning("development.md: the package diagram has no box for module %s", module)
    for module in sorted(boxes - modules):
        log.warning("development.md: the package diagram shows %s, which is no module of the package", module)
    for source, target in arrows:
        if (source, target) not in edges:
            log.warning(
                "development.md: the diagram draws %s -> %s; the code has no such import", source, target
            )


def on_page_markdown(markdown: str, *, page: Any, **kwargs: Any) -> str:
    source = page.file.src_uri
    if source == "troubleshooting.md":
        text = _normalize(markdown)
        for piece, where in expected_messages():
            if _normalize(piece) not in text:
                log.warning("troubleshooting.md does not explain the message raised at %s: %r", where, piece)
    elif source == "development.md":
        check_package_diagram(markdown)
    elif source == "reference/exceptions.md":
        for name in exception_classes():
            if not re.search(rf"[─ ]{name}\b", markdown):
                log.warning("reference/exceptions.md: the hierarchy does not show %s", name)
    return markdown
