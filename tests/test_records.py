"""The record registry: one writer and one reader per kind, with one error rule."""

import json

import pytest

from costeff.artifacts import Workspace
from costeff.errors import InputError
from costeff.records.kinds import KINDS, PROFILE, QUANT
from workspace_support import env_home


def test_every_kind_is_declared_once_with_its_own_file():
    files = [(k.folder, k.filename) for k in KINDS.values()]
    assert len(set(files)) == len(files)


def test_a_written_record_reads_back_typed_and_keeps_undeclared_fields(tmp_path):
    path = QUANT.write(tmp_path, {"schema_version": 1, "inputs": {"profile": "ab" * 32}, "anything": [1, 2]})
    record = QUANT.read(path)
    assert record.schema_version == 1 and record.inputs == {"profile": "ab" * 32}
    assert record.to_dict()["anything"] == [1, 2]
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temp file and a rename


def test_a_corrupt_record_is_an_error_naming_the_file_never_missing(tmp_path):
    bad = tmp_path / "gpu_profile.json"
    bad.write_text("{truncated")
    with pytest.raises(InputError, match=rf"{bad}: corrupt profile record, not valid JSON"):
        PROFILE.read(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(InputError, match="expected a JSON object, found list"):
        PROFILE.read(bad)
    bad.write_text(json.dumps({"schema_version": "one"}))
    with pytest.raises(InputError, match="corrupt profile record: schema_version"):
        PROFILE.read(bad)


def test_a_missing_record_says_missing(tmp_path):
    with pytest.raises(InputError, match="no quant record here"):
        QUANT.read(tmp_path / "quantization_report.json")


def test_a_writer_cannot_write_a_record_that_does_not_match_its_type(tmp_path):
    with pytest.raises(TypeError, match="schema_version"):
        QUANT.write(tmp_path, {"schema_version": "one"})
    assert not (tmp_path / QUANT.filename).exists()


def test_latest_is_the_newest_stamped_folder(tmp_path):
    layout = Workspace.at(tmp_path, env_home())
    assert QUANT.latest(layout) is None
    for stamp in ("20261101_000000Z", "20261202_000000Z", "20261115_000000Z"):
        QUANT.write(layout.quant / stamp, {"schema_version": 1})
    assert QUANT.latest(layout) == layout.quant / "20261202_000000Z" / QUANT.filename


def test_a_record_nested_too_deeply_is_a_named_error_not_a_crash(tmp_path):
    deep = tmp_path / "gpu_profile.json"
    deep.write_text('{"points": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InputError, match=rf"{deep}: corrupt profile record"):
        PROFILE.read(deep)
