"""The CLI's help: bare commands print it, every option and format is named, outputs are checked first."""

from typer.testing import CliRunner

from tagnet.cli import app

runner = CliRunner()


def test_bare_commands_print_help_and_exit_0():
    for args in ([], ["data"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output and "Commands" in result.output


def test_help_texts():
    train_help = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "<bool>" not in train_help and "(default True)" in train_help and "(default none)" in train_help
    assert "required unless --resume" in train_help
    for command in (["evaluate"], ["data", "check"], ["data", "split"]):
        text = " ".join(runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output.split())
        for name in ("ARFF", "CVAT", "Label Studio", "spaCy", "Hugging Face", "labelstudio-csv", "huggingface"):
            assert name in text, (command, name)
        assert "<bool>" not in text


def test_predict_checks_the_output_suffix_first(tiny_run, tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "no-such-run"), "x.png", "--output", str(tmp_path / "out.txt")])
    assert "suffix '.txt'; expected one of .csv, .tsv, .json" in str(result.exception)
