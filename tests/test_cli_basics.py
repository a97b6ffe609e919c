from vidact import __version__


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0
    assert __version__ in r.stdout


def test_unknown_command_is_usage_error(cli):
    r = cli("no-such-command")
    assert r.exit_code == 2
    assert "No such command" in r.stderr


def test_bad_option_value_is_one_line_usage_error(cli, tmp_path):
    r = cli("data", "synth", str(tmp_path / "x"), "--classes", "50")
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines()[-1] == "error: classes must be in 2..10"
    assert "Traceback" not in r.stderr
