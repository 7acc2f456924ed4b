"""``runtime/cli.py``: the command dispatcher (in-process, through ``cli.main``)."""
import pytest

from dlrun.runtime import cli


@pytest.mark.parametrize("word, hint", [("trian", "did you mean 'train'?"), ("chek", "did you mean 'check'?"),
                                        ("sumary", "did you mean 'summary'?"), ("xyzzy", "known: train")])
def test_misspelled_command_is_named_not_taken_for_a_model_file(word, hint, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main([word, "x.net"]) == 2
    err = capsys.readouterr().err
    assert f"unknown command '{word}'" in err and hint in err
    assert "no such model file" not in err


def test_a_model_file_is_still_the_default_command(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["missing.net"]) == 2
    assert "missing.net: no such model file" in capsys.readouterr().err
    (tmp_path / "model").write_text("not a model")  # an existing file without .net is a model file
    assert cli.main(["model"]) == 2
    assert "unknown command" not in capsys.readouterr().err


def test_an_unknown_option_of_a_subcommand_shows_that_subcommand_s_usage(capsys):
    from dlrun.runtime.cli import main

    assert main(["train", "model.net", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlrun train: error: unrecognized arguments: --bogus")
    assert "usage: dlrun train " in err and "usage: dlrun [-h]" not in err
    assert main(["eval", "m.net", "--weights", "w.npz", "--frob", "1"]) == 2
    assert "usage: dlrun eval " in capsys.readouterr().err
