"The `dogbreeds` command: a real training run, and one-line errors with exit status 2."
import subprocess, sys

from conftest import ROOT


def dogbreeds(*args, cwd=None):
    return subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', *args],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=600)


def test_help_lists_commands():
    r = dogbreeds('--help')
    assert r.returncode == 0 and 'train' in r.stdout and 'weights' in r.stdout


def test_unknown_command():
    r = dogbreeds('fly')
    assert r.returncode == 2 and r.stderr.strip() == "dogbreeds: error: unknown command 'fly'; commands: train, weights, push, pull, list, promote, delete"


def test_train_runs_end_to_end(tmp_path):
    r = dogbreeds('train', '--size', '64', '--epochs', '0', '--freeze-epochs', '1', '--lr', '0.002', '--bs', '32',
                  '--out-dir', str(tmp_path), '--run-name', 'cli')
    assert r.returncode == 0, r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith(f"run saved to {tmp_path / 'cli'}: validation accuracy ")
    assert (tmp_path / 'cli' / 'metrics.json').exists()
    assert '\r' not in r.stdout  # no progress-bar noise in a log


def test_bad_data_path_is_one_line(tmp_path):
    r = dogbreeds('train', '--data', 'no/such/photos', '--out-dir', str(tmp_path / 'out'))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "dogbreeds: error: data path 'no/such/photos' not found: pass a folder of photos, 'sample', 'imagewoof', "
        "or KIND:PATH with KIND one of folder, imagewoof, oxford-pets, stanford-dogs"]
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


def test_wrong_type_is_rejected_by_the_parser(tmp_path):
    r = dogbreeds('train', '--epochs', 'three', '--out-dir', str(tmp_path))
    assert r.returncode == 2 and "invalid int value: 'three'" in r.stderr and 'Traceback' not in r.stderr
