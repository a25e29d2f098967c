"""A version a person types is a number (issue 27): ``rollback --version 01`` restores v1 and says so,
instead of moving the alias, comparing "01" with "1" and recording a false "moved by hand".

Typed versions are normalised where they enter (the CLI's ``--version``, a job parameter) and
compared as numbers wherever one is checked (promotion, rollback, validate).
"""

from __future__ import annotations

import pytest

from spark_mlops import registry_tags as rt
from spark_mlops.config import parse_version, same_version
from spark_mlops.constants import EXIT_CONFIG
from spark_mlops.errors import ConfigError
from tests.conftest import released, run_cli


@pytest.mark.parametrize(("typed", "number"), [("1", "1"), ("01", "1"), (" 002 ", "2"), ("10", "10"), ("", None),
                                               (None, None)])
def test_a_typed_version_is_its_number(typed, number):
    assert parse_version(typed) == number


@pytest.mark.parametrize("typed", ["0", "00", "-1", "1.0", "v2", "1e3", "two", "²", "１"])
def test_anything_but_a_positive_whole_number_is_refused(typed):
    with pytest.raises(ConfigError, match=r"a model version is a positive whole number"):
        parse_version(typed)


def test_versions_compare_as_numbers():
    assert same_version("01", "1") and same_version(2, "2") and same_version(None, None)
    assert not same_version("1", "10") and not same_version("1", None) and not same_version("none", "1")


@pytest.mark.parametrize("command", ["rollback", "promote", "validate", "record-rejection"])
def test_a_version_that_is_no_number_is_one_line_and_exit_2(command, tmp_path, capsys):
    reason = ("--reason", "typed") if command in ("rollback", "promote") else ()
    assert run_cli(command, "--state-dir", str(tmp_path / "state"), "--version", "v2", *reason) == EXIT_CONFIG
    out, err = capsys.readouterr()
    assert err.strip() == (f"spark-mlops {command}: error: --version 'v2': a model version is a positive whole "
                           "number (1, 2, ...)")
    assert not (tmp_path / "state" / "registry.db").exists()  # refused before the registry was opened


def test_rollback_to_version_01_restores_v1_and_records_no_false_move(trained, capsys):
    view, args = released(trained, "1", "1")
    assert run_cli("validate", *args, "--version", "2") == 0
    assert run_cli("promote", *args, "--version", "2") == 0
    assert trained.champion(view) == "2"
    capsys.readouterr()
    assert run_cli("rollback", *args, "--version", "01", "--reason", "typed with a zero") == 0
    out, err = capsys.readouterr()
    assert trained.champion(view) == "1"
    assert "moved by hand" not in out + err
    assert "@champion -> v1 (was v2)" in out
    assert trained.tags(view, "2")[rt.ROLLED_BACK_TO] == "1"
    assert trained.tags(view, "1")[rt.RESTORED_FROM] == "2"
    # "002" is v2, which was rolled back (its verdict revoked), not some other version.
    assert run_cli("rollback", *args, "--version", "002", "--reason", "again") != 0
    assert "was itself rolled back" in capsys.readouterr().err
    # Validated again and promoted as "02": the same checks, read as v2.
    assert run_cli("validate", *args, "--version", "02") == 0
    assert run_cli("promote", *args, "--version", "02") == 0
    assert trained.champion(view) == "2" and trained.tags(view, "2")[rt.PREVIOUS_CHAMPION_VERSION] == "1"
