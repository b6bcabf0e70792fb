"""protocol.validation: the strict base model, error messages naming the field, and YAML files
read with errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from protocol.validation import StrictModel, field_errors, read_yaml


class Inner(StrictModel):
    port: int = Field(ge=1, le=65535)


class Outer(StrictModel):
    name: str
    inner: Inner


class FileError(ValueError):
    """What the caller raises for a bad file."""


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        Outer.model_validate(data)
    return err.value


def test_strict_models_refuse_unknown_keys_and_changes() -> None:
    exc = _error({"name": "a", "inner": {"port": 1}, "nmae": "typo"})
    assert field_errors(exc, "config") == "config field nmae: Extra inputs are not permitted"
    ok = Outer.model_validate({"name": "a", "inner": {"port": 1}})
    with pytest.raises(ValidationError, match="frozen"):
        ok.name = "b"  # type: ignore[misc]


def test_field_errors_name_the_nested_field() -> None:
    exc = _error({"name": "a", "inner": {"port": 0}})
    assert field_errors(exc, "node.yaml:") == \
        "node.yaml: field inner.port: Input should be greater than or equal to 1"


def test_field_errors_first_only_or_every_one() -> None:
    exc = _error({"inner": {"port": "x"}, "extra": 1})
    assert len(field_errors(exc, "c").splitlines()) == 1
    every = field_errors(exc, "c", first_only=False).splitlines()
    assert every == ["c field name: Field required",
                     "c field inner.port: Input should be a valid integer, unable to parse "
                     "string as an integer",
                     "c field extra: Extra inputs are not permitted"]


def test_an_error_about_the_whole_document_says_top() -> None:
    exc = _error(["not", "a", "mapping"])
    assert field_errors(exc, "c").startswith("c field (top): ")
    assert field_errors(exc, "c", top="payload").startswith("c field payload: ")


def test_read_yaml_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text("node_id: 河源-01\nzones: {water: [[0, 0.6]]}\n", encoding="utf-8")
    assert read_yaml(path, FileError) == {"node_id": "河源-01", "zones": {"water": [[0, 0.6]]}}


@pytest.mark.parametrize(("content", "why"), [
    (None, "cannot read"),
    (b"node_id: \xff\xfe\n", "not UTF-8 text (byte 9)"),
    (b"node_id: [unclosed\n", "not valid YAML"),
    (b"a: 1\n  b: 2\n", "not valid YAML"),
])
def test_read_yaml_names_the_file_and_what_is_wrong(tmp_path: Path, content: bytes | None,
                                                    why: str) -> None:
    path = tmp_path / "node.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FileError) as err:
        read_yaml(path, FileError)
    assert str(err.value).startswith(f"{path}: {why}"), err.value


def test_read_yaml_refuses_python_tags(tmp_path: Path) -> None:
    """safe_load: a file cannot make the reader build Python objects."""
    path = tmp_path / "node.yaml"
    path.write_text("x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(FileError, match="not valid YAML"):
        read_yaml(path, FileError)
