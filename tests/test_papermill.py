"""The training notebook as a papermill batch job: parameters in, a run folder out; a bad parameter fails in one line;
a production run (plain papermill) executes no test or demo cell."""
import json, re, subprocess, sys

import papermill as pm
import pytest

from conftest import ROOT
from dogbreeds.core import DEMO, SKIPPED

NB = ROOT / 'nbs' / '27_train.ipynb'


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
    "A plain `papermill` run of the training notebook (as its Parameters section shows) on the sample, at 64 px."
    tmp_path = tmp_path_factory.mktemp('papermill')
    out_nb = tmp_path / 'out.ipynb'
    r = subprocess.run([sys.executable, '-m', 'papermill', str(NB), str(out_nb), '--no-progress-bar',
                        '-p', 'size', '64', '-p', 'bs', '32', '-p', 'export', 'False', '-p', 'out_dir', str(tmp_path / 'runs'),
                        '-p', 'run_name', 'pm'],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    return tmp_path, out_nb, r


def test_papermill_cli_run(cli_run):
    tmp_path, out_nb, r = cli_run
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / 'runs' / 'pm'
    params = json.loads((run / 'params.json').read_text())
    # the default recipe: the classifiers fitted on frozen ImageNet bodies (no epochs, no learning rate)
    assert (params['size'], params['bs'], params['recipe'], params['epochs'], params['lr']) == (64, 32, 'imagenet-head', 0, None)
    assert [l.split(',')[0] for l in (run / 'history.csv').read_text().splitlines()[1:]] == ['0', '1']  # start, fitted heads
    assert json.loads((run / 'metrics.json').read_text())['n_valid'] == 80
    nb = json.loads(out_nb.read_text())
    injected = [c for c in nb['cells'] if 'injected-parameters' in c['metadata'].get('tags', [])]
    assert injected and "size = 64" in ''.join(injected[0]['source'])
    shown = ''.join(''.join(o.get('data', {}).get('text/plain', '')) for c in nb['cells'] for o in c.get('outputs', []))
    assert 'TrainResult(' in shown and 'accuracy' in shown  # the notebook shows its result


def test_papermill_wrong_type_is_one_line_and_writes_nothing(tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(NB), str(tmp_path / 'out.ipynb'), progress_bar=False, cwd=str(tmp_path),
                            parameters=dict(epochs='three', out_dir=str(tmp_path / 'runs')))
    assert e.value.ename == 'ParameterError'
    assert e.value.evalue == "epochs must be a whole number >= 0, got 'three' (str)"
    assert e.value.traceback == ["ParameterError: epochs must be a whole number >= 0, got 'three' (str)"]
    assert not (tmp_path / 'runs').exists()


def test_papermill_nproc_reaches_the_checks(tmp_path):
    "`-p nproc 2` is a parameter of the notebook, checked like `dogbreeds train --nproc 2` (here refused for the default recipe)."
    assert 'nproc' in pm.inspect_notebook(str(NB))
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(NB), str(tmp_path / 'out.ipynb'), progress_bar=False, cwd=str(tmp_path),
                            parameters=dict(nproc=2, out_dir=str(tmp_path / 'runs')))
    assert e.value.ename == 'ParameterError' and e.value.evalue.startswith('nproc: the imagenet-head recipe runs each photo once')
    assert not (tmp_path / 'runs').exists()


def test_papermill_run_skips_test_and_demo_cells(cli_run):
    """The same plain papermill run is a production run: every `#| demo` cell printed the skip note and nothing else
    (its code never ran: not the test imports, not an example, not an assert), and every cell that tests is one."""
    _, out_nb, r = cli_run
    assert r.returncode == 0, r.stderr[-3000:]
    cells = [c for c in json.loads(out_nb.read_text())['cells'] if c['cell_type'] == 'code']
    src = lambda c: ''.join(c['source'])
    demo = [c for c in cells if src(c).startswith(DEMO + '\n')]
    assert len(demo) >= 5 and any('from fastcore.test import' in src(c) for c in demo)
    for c in demo:
        assert [(o['output_type'], ''.join(o.get('text', ''))) for o in c['outputs']] == [('stream', SKIPPED + '\n')], src(c)
    testing = re.compile(r'\b(test_\w+\(|assert )')
    assert not [src(c) for c in cells if c not in demo and testing.search(src(c))]
    assert any('TrainResult(' in ''.join(o.get('data', {}).get('text/plain', '')) for c in cells for o in c['outputs'])
