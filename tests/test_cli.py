"The `dogbreeds` command: a real training run, `--version`, and one-line errors: exit 2 for bad usage, 1 for a failure at run time."
from conftest import dogbreeds



def test_help_lists_commands():
    r = dogbreeds('--help')
    assert r.returncode == 0 and 'train' in r.stdout and 'weights' in r.stdout


def test_version():
    from dogbreeds import __version__
    r = dogbreeds('--version')
    assert (r.returncode, r.stdout, r.stderr) == (0, f"dogbreeds {__version__}\n", '')


def test_exit_status_usage_2_run_time_1(tmp_path):
    for args in (['train', '--no-such-option'], ['cost', '--requests', 'many'],  # the parser refuses
                 ['predict', 'photos/', '--out', 'r.csv', '--top', '3'],  # options by their full names only
                 ['deploy', 'x', '--image', 'i', '--role', 'r'],  # the old names are gone
                 ['cost', '--requests', '1e6']):  # the command refuses the combination (ParameterError)
        r = dogbreeds(*args)
        assert r.returncode == 2 and not r.stdout and 'Traceback' not in r.stderr, (args, r.stderr)
    r = dogbreeds('geo', 'stats', '--geo-db', str(tmp_path / 'no' / 'such' / 'dir' / 'g.db'))  # the store cannot be opened
    assert r.returncode == 1 and r.stderr.startswith('dogbreeds: error: ') and r.stderr.count('\n') == 1, r.stderr


def test_unknown_command():
    r = dogbreeds('fly')
    from dogbreeds.cli import COMMANDS
    assert r.returncode == 2 and r.stderr.strip() == f"dogbreeds: error: unknown command 'fly'; commands: {', '.join(COMMANDS)}"


def test_train_runs_end_to_end(tmp_path):
    r = dogbreeds('train', '--size', '64', '--epochs', '0', '--freeze-epochs', '1', '--lr', '0.002', '--batch-size', '32',
                  '--out-dir', str(tmp_path), '--run-name', 'cli', '--no-export')
    assert r.returncode == 0, r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith(f"run saved to {tmp_path / 'cli'}: validation accuracy ")
    assert (tmp_path / 'cli' / 'metrics.json').exists()
    assert '\r' not in r.stdout  # no progress-bar noise in a log


def test_bad_data_path_is_one_line(tmp_path):
    r = dogbreeds('train', '--data', 'no/such/photos', '--out-dir', str(tmp_path / 'out'))
    assert r.returncode == 1  # the command line is fine: the data is not there
    assert r.stderr.strip().splitlines() == [
        "dogbreeds: error: data path 'no/such/photos' not found: pass a folder of photos, 'sample', 'imagewoof', "
        "or KIND:PATH with KIND one of folder, imagewoof, oxford-pets, stanford-dogs"]
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


def test_wrong_type_is_rejected_by_the_parser(tmp_path):
    r = dogbreeds('train', '--epochs', 'three', '--out-dir', str(tmp_path))
    assert r.returncode == 2 and "invalid int value: 'three'" in r.stderr and 'Traceback' not in r.stderr
