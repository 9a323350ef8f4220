"""The package's layering: arrows point down (defs -> domain -> infra), and dev/ is never on the
runtime path. A violation names the module and the import, so a newcomer sees where it belongs."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fs_platform"
DOMAIN = ("ingestion", "features", "online", "retrieval", "model", "monitoring", "serving")
#: what each layer may import from the package (besides itself)
ALLOWED: dict[str, tuple[str, ...]] = {
    "infra": ("infra",),
    **{name: (*DOMAIN, "infra") for name in DOMAIN},
    "defs": ("defs", *DOMAIN, "infra"),
    "dev": ("dev", "defs", "definitions", *DOMAIN, "infra"),
    "definitions": ("defs",),
    "cli": ("cli", "dev", "defs", "definitions", *DOMAIN, "infra"),
}


def _layer(module: Path) -> str:
    return module.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(module: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(module.read_text(), str(module))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "fs_platform" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def test_every_module_belongs_to_a_known_layer():
    layers = {_layer(m) for m in PACKAGE.rglob("*.py")} - {"__init__"}
    assert layers <= set(ALLOWED), f"modules outside the known layers: {layers - set(ALLOWED)}"


def test_imports_point_down():
    violations = []
    for module in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(module)
        if layer == "__init__":
            continue
        for line, target in _imports(module):
            if target not in ALLOWED[layer] and target != "__init__":
                rel = module.relative_to(PACKAGE.parent)
                violations.append(f"{rel}:{line} ({layer}) imports fs_platform.{target}")
    assert not violations, "imports against the layering:\n" + "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path):
    """The rule above is not vacuous: a domain module importing the generator is caught."""
    fake = tmp_path / "fs_platform" / "model" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from fs_platform.dev.synthetic import generate\n")
    assert _imports(fake) == [(1, "dev"), (1, "dev")]
    assert "dev" not in ALLOWED["model"]
