"""Data-parallel training (`dogbreeds train --nproc N`, `dogbreeds.distributed`): 2 CPU processes on gloo through torchrun
train one run that rank 0 alone writes; a rank that dies, or hangs, takes the run down with an error naming it."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from dogbreeds.cli import main
from dogbreeds.core import ParameterError

ROOT = Path(__file__).resolve().parent.parent
RUN = dict(recipe='fine-tune', arch='mobilenet_v2', size=64, epochs=1, freeze_epochs=0, lr=2e-3, bs=32, nproc=2)


def test_nproc_is_for_the_fine_tune_recipe(capsys):
    from dogbreeds.train import train
    with pytest.raises(ParameterError, match='L-BFGS'): train('sample', nproc=2)
    with pytest.raises(ParameterError, match='needs lr'): train('sample', **{**RUN, 'lr': None})
    with pytest.raises(ParameterError, match='nproc must be'): train('sample', **{**RUN, 'nproc': 0})
    with pytest.raises(SystemExit): main(['train', '--nproc', '2'])
    err = capsys.readouterr().err
    assert err.startswith('dogbreeds: error: nproc: the imagenet-head recipe') and err.count('\n') == 1


@pytest.mark.slow
def test_two_cpu_processes_train_one_run(tmp_path):
    from dogbreeds.train import train
    r = train('sample', **RUN, out_dir=tmp_path, run_name='ddp', quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ['ddp'], "rank 0 alone writes a run folder"
    p = json.loads((r.run_dir / 'params.json').read_text())
    dd = p['distributed']
    assert p['nproc'] == 2, "params.json's nproc is the run's, not the one process's"
    assert (dd['nproc'], dd['backend'], dd['per_process_bs'], dd['global_bs'], dd['lr']) == (2, 'gloo', 16, 32, 2e-3)
    seen = dd['photos_trained_per_rank']
    assert len(seen) == 2 and seen[0] == seen[1] > 0, seen  # each rank its own half of every epoch
    assert p['n_train'] - 32 <= sum(seen) <= p['n_train'], (seen, p['n_train'])
    assert 0.3 < r.metrics['accuracy'] <= 1 and r.metrics['top5_accuracy'] >= r.metrics['accuracy']  # chance is 0.1
    assert (r.run_dir / 'model' / 'manifest.json').exists() and (r.run_dir / 'history.csv').exists()


FAULTS = {  # DOGBREEDS_DDP_FAULT (dogbreeds.distributed.fault_point): rank 1 stops itself where the test says
    'dies': '1:batch2:KILL',                      # killed at its 2nd batch: torchrun sees it die
    # blocked at its 2nd batch: rank 0's next collective times out (blocked, not STOPped: a stopped rank ignores
    # torchrun's SIGTERM, and torchrun waits 30 s before its SIGKILL; 'hangs after training' keeps STOP)
    'hangs': '1:batch2:HANG',
    'hangs after training': '1:end:STOP',         # frozen after the last collective: rank 0 finishes, the launcher stops it
}


@pytest.mark.slow
@pytest.mark.parametrize('how', list(FAULTS))
def test_a_rank_that_dies_or_hangs_fails_the_run(tmp_path, how):
    """A rank stops at a point the test chooses (not after a sleep): the run fails in bounded time with an error naming
    the rank. The timeouts are generous against load, far below the test's own."""
    code = (f"from dogbreeds.train import train\n"
            f"train('sample', **{dict(RUN)!r}, out_dir={str(tmp_path)!r}, run_name='ddp', quiet=True)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), DOGBREEDS_DDP_FAULT=FAULTS[how], DOGBREEDS_DDP_TIMEOUT='30',
               DOGBREEDS_DDP_EXIT_TIMEOUT='5')
    p = subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try: out, err = p.communicate(timeout=500)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith('dogbreeds.distributed.DistributedError: data-parallel training on 2 processes'), last
    if how == 'dies': assert 'rank : 1' in last and 'SIGKILL' in last, last
    elif how == 'hangs': assert 'rank : 0' in last and ('timeout' in last.lower() or 'timed out' in last.lower()), last  # rank 0 gave up
    else:
        assert f"rank 0 wrote the run ({tmp_path / 'ddp'}, complete), but rank 1 did not exit within 5 s" in last, last
        assert (tmp_path / 'ddp' / 'metrics.json').exists() and (tmp_path / 'ddp' / 'model' / 'manifest.json').exists()
    if how != 'hangs after training': assert not (tmp_path / 'ddp').exists(), "no run folder from a failed run"
    import psutil
    assert not [c for c in psutil.process_iter(['environ']) if (c.info['environ'] or {}).get('DOGBREEDS_DDP_FAULT') == FAULTS[how]
                and c.pid != os.getpid()], "no rank left behind"


@pytest.mark.slow
def test_two_machines_one_run(tmp_path):
    """Two 'machines' on this one (two launchers joined by torchrun's static rendezvous on 127.0.0.1, as two SageMaker
    instances are): one process each, one run (not exported: that is the one-machine test's), written by node 0 alone; node 1's launcher returns None and leaves nothing."""
    from dogbreeds.testing import free_ports
    [port] = free_ports(1)
    code = ("import sys\nfrom dogbreeds.train import train\n"
            f"r = train('sample', **{dict(RUN, nproc=1, export=False)!r}, out_dir=sys.argv[1], run_name='ddp', quiet=True)\n"
            "print('RESULT', r.run_dir if r is not None else None)")
    procs = []
    for node in (0, 1):
        env = dict(os.environ, PYTHONPATH=str(ROOT), DOGBREEDS_DDP_NODES='2', DOGBREEDS_DDP_NODE_RANK=str(node),
                   DOGBREEDS_DDP_MASTER=f'127.0.0.1:{port}', DOGBREEDS_DDP_TIMEOUT='120', OMP_NUM_THREADS='1')
        (tmp_path/f'node{node}').mkdir()
        procs.append(subprocess.Popen([sys.executable, '-c', code, str(tmp_path/f'node{node}')], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try: outs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None: p.kill()
    for p, (out, err) in zip(procs, outs): assert p.returncode == 0, err[-3000:]
    assert outs[0][0].strip().splitlines()[-1] == f"RESULT {tmp_path/'node0'/'ddp'}"
    assert outs[1][0].strip().splitlines()[-1] == 'RESULT None'
    assert not any((tmp_path/'node1').iterdir()), "node 1 writes no run"
    dd = json.loads((tmp_path/'node0'/'ddp'/'params.json').read_text())['distributed']
    assert (dd['nproc'], dd['nodes'], dd['nproc_per_node'], dd['per_process_bs'], dd['global_bs']) == (2, 2, 1, 16, 32)
    seen = dd['photos_trained_per_rank']
    assert len(seen) == 2 and seen[0] == seen[1] > 0, seen  # each rank, one per machine, its own half of every epoch


@pytest.mark.slow
def test_a_rank_that_hangs_on_another_machine_fails_its_node(tmp_path):
    """Two 'machines' as above; node 1's one process freezes after its last collective: node 1's launcher stops it
    after DOGBREEDS_DDP_EXIT_TIMEOUT and fails, naming it, as node 0's does (it would otherwise wait for ever)."""
    import psutil
    from dogbreeds.testing import free_ports
    [port] = free_ports(1)
    code = ("import sys\nfrom dogbreeds.train import train\n"
            f"train('sample', **{dict(RUN, nproc=1, export=False)!r}, out_dir=sys.argv[1], run_name='ddp', quiet=True)")
    procs = []
    for node in (0, 1):
        env = dict(os.environ, PYTHONPATH=str(ROOT), DOGBREEDS_DDP_NODES='2', DOGBREEDS_DDP_NODE_RANK=str(node),
                   DOGBREEDS_DDP_MASTER=f'127.0.0.1:{port}', DOGBREEDS_DDP_TIMEOUT='120', DOGBREEDS_DDP_EXIT_TIMEOUT='5',
                   OMP_NUM_THREADS='1', **({'DOGBREEDS_DDP_FAULT': '1:end:STOP'} if node else {}))
        (tmp_path/f'node{node}').mkdir()
        procs.append(subprocess.Popen([sys.executable, '-c', code, str(tmp_path/f'node{node}')], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try: out, err = procs[1].communicate(timeout=400)
    finally:
        for p in procs:  # node 0 has written its run; its torchrun may still wait for node 1's at its exit barrier
            if p.poll() is None:
                for c in psutil.Process(p.pid).children(recursive=True): c.kill()
                p.kill()
            p.communicate()
    assert procs[1].returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("dogbreeds.distributed.DistributedError: data-parallel training on 1 processes on node 1 of 2: "
                           "this machine's local rank 0 finished training, but rank 1 did not exit within 5 s"), last
    assert not any((tmp_path/'node1').iterdir()), "node 1 writes no run"
    assert not [c for c in psutil.process_iter(['environ']) if (c.info['environ'] or {}).get('DOGBREEDS_DDP_FAULT') == '1:end:STOP'
                and c.pid != os.getpid()], "no rank left behind"
