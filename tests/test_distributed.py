"""Data-parallel training (`dogbreeds train --nproc N`, `dogbreeds.distributed`): 2 CPU processes on gloo through torchrun
train one run that rank 0 alone writes; a rank that dies, or hangs, takes the run down with an error naming it."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from dogbreeds.cli import main
from dogbreeds.core import ParameterError

ROOT = Path(__file__).resolve().parent.parent
RUN = dict(recipe='fine-tune', arch='mobilenet_v2', size=64, epochs=1, freeze_epochs=0, lr=2e-3, bs=32, nproc=2)


def test_nproc_is_for_the_fine_tune_recipe(capsys):
    from dogbreeds.distributed import train
    with pytest.raises(ParameterError, match='L-BFGS'): train('sample', nproc=2)
    with pytest.raises(ParameterError, match='needs lr'): train('sample', **{**RUN, 'lr': None})
    with pytest.raises(ParameterError, match='nproc must be'): train('sample', **{**RUN, 'nproc': 0})
    with pytest.raises(SystemExit): main(['train', '--nproc', '2'])
    err = capsys.readouterr().err
    assert err.startswith('dogbreeds: error: nproc: the imagenet-head recipe') and err.count('\n') == 1


@pytest.mark.slow
def test_two_cpu_processes_train_one_run(tmp_path):
    from dogbreeds.distributed import train
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


def _rank_pid(proc, rank: int, deadline: float) -> int:
    "The pid of rank `rank` among the processes under `proc` (torchrun's workers carry RANK in their environment)."
    import psutil
    while time.time() < deadline:
        for c in psutil.Process(proc.pid).children(recursive=True):
            try:
                if c.environ().get('RANK') == str(rank) and 'dogbreeds.distributed' in ' '.join(c.cmdline()): return c.pid
            except psutil.Error: pass
        time.sleep(0.5)
    raise AssertionError(f"rank {rank} never started")


@pytest.mark.slow
@pytest.mark.parametrize('how', ['dies', 'hangs'])
def test_a_rank_that_dies_or_hangs_fails_the_run(tmp_path, how):
    code = (f"from dogbreeds.distributed import train\n"
            f"train('sample', **{dict(RUN, epochs=3)!r}, out_dir={str(tmp_path)!r}, run_name='ddp', quiet=True)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), DOGBREEDS_DDP_TIMEOUT='10')
    p = subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pid = _rank_pid(p, 1, time.time() + 90)
        time.sleep(8)  # it has joined the group and is training
        os.kill(pid, signal.SIGKILL if how == 'dies' else signal.SIGSTOP)
        t = time.time()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith('dogbreeds.distributed.DistributedError: data-parallel training on 2 processes failed'), last
    if how == 'dies': assert 'rank : 1' in last and 'SIGKILL' in last, last
    else: assert 'rank : 0' in last and ('timeout' in last.lower() or 'timed out' in last.lower()), last  # rank 0 gave up waiting
    assert not (tmp_path / 'ddp').exists(), "no run folder from a failed run"


@pytest.mark.slow
def test_two_machines_one_run(tmp_path):
    """Two 'machines' on this one (two launchers joined by torchrun's static rendezvous on 127.0.0.1, as two SageMaker
    instances are): one process each, one run (not exported: that is the one-machine test's), written by node 0 alone; node 1's launcher returns None and leaves nothing."""
    from dogbreeds.testing import free_ports
    [port] = free_ports(1)
    code = ("import sys\nfrom dogbreeds.distributed import train\n"
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
