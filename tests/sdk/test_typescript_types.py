"""The TypeScript SDK's API types (sdk/typescript/src/generated/openapi.ts) are generated from
the service's OpenAPI document by `make sdk-ts-types`: the committed file must be what that
writes now, so a change of the API cannot ship without its types. No network, no database:
the document is built in process and openapi-typescript comes from sdk/typescript/node_modules.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "sdk" / "typescript" / "scripts" / "openapi.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdk_typescript_openapi", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    module = load_script()
    if not module.CLI.exists():
        pytest.fail("sdk/typescript/node_modules is missing: run `make install`")
    return module


@pytest.fixture(scope="module")
def document(script: ModuleType) -> dict[str, Any]:
    doc: dict[str, Any] = script.document()
    return doc


def test_the_committed_types_are_current(script, document):
    committed = script.TYPES.read_text(encoding="utf-8")
    assert script.typescript(document) == committed, (
        "sdk/typescript/src/generated/openapi.ts is stale: run `make sdk-ts-types` and commit it"
    )


def test_a_change_of_the_document_is_a_change_of_the_types(script, document):
    """The check above can fail: one more field of the agent object changes the file."""
    changed = copy.deepcopy(document)
    agent = changed["components"]["schemas"]["AgentRead"]
    agent["properties"]["favourite_colour"] = {"type": "string"}
    agent["required"] = [*agent["required"], "favourite_colour"]
    generated = script.typescript(changed)
    assert generated != script.TYPES.read_text(encoding="utf-8")
    assert "favourite_colour: string;" in generated


def test_the_document_is_written_the_same_way_each_time(script, document):
    assert script.document_text(script.document()) == script.document_text(document)
    assert script.document_text(document).startswith('{\n  "components"')  # sorted keys


def test_check_mode_names_the_make_target(script, tmp_path, capsys):
    stale = tmp_path / "openapi.ts"
    stale.write_text("// stale\n", encoding="utf-8")
    assert script.main(["types", str(stale), "--check"]) == 1
    assert "make sdk-ts-types" in capsys.readouterr().err
    assert script.main(["types", str(stale)]) == 0
    assert script.main(["types", str(stale), "--check"]) == 0
    assert stale.read_text(encoding="utf-8") == script.TYPES.read_text(encoding="utf-8")
