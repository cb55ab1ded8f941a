"The batch capacity model (`dogbreeds cost --batch PHOTOS --deadline HOURS`): its arithmetic, its inputs, its refusals."
import json, math

import pytest

from dogbreeds.cli import main
from dogbreeds.capacity import STARTUP_S, batch_options, batch_rate
from dogbreeds.prices import load_prices


def test_arithmetic_follows_the_prices_and_the_rate():
    P, rate = load_prices(), 12.5
    opts = {o['option']: o for o in batch_options(2e6, 6, rate)}
    one = opts['one machine (EC2)']
    vm = P['vm']['instances'][one['unit']]
    hours = (STARTUP_S['one machine'] + 2e6 / (rate * vm['vcpus'])) / 3600
    assert one['count'] == 1 and one['hours'] == pytest.approx(hours) and one['cost'] == pytest.approx(hours * vm['hourly'])
    bt = opts['SageMaker Batch Transform']
    spec = P['sagemaker_realtime']['instances'][bt['unit']]
    n = math.ceil(2e6 / (rate * spec['vcpus'] * (6 * 3600 - STARTUP_S['batch transform'])))
    assert bt['count'] == n and bt['meets'] and bt['hours'] <= 6
    assert bt['cost'] == pytest.approx(n * spec['hourly'] * bt['hours'])
    # a tighter deadline takes more instances, a bigger batch costs proportionally more
    tight = {o['option']: o for o in batch_options(2e6, 2, rate)}
    assert tight['sharded pods (Kubernetes on EC2)']['count'] > opts['sharded pods (Kubernetes on EC2)']['count']
    big = {o['option']: o for o in batch_options(2e7, 6, rate)}
    assert big['Lambda fan-out (S3 events)']['cost'] == pytest.approx(10 * opts['Lambda fan-out (S3 events)']['cost'], rel=1e-6)


def test_measured_rate_is_read_from_the_benchmark(tmp_path):
    f = tmp_path / 'batch_shards.json'
    f.write_text(json.dumps({'photos_per_s': {'1 process': 30.0}, 'cpus': 2, 'measured': 'then'}))
    rate, src = batch_rate(path=f)
    assert rate == 15.0 and src.startswith('measured: ') and '30.0 photos/s on 2 CPUs' in src
    with pytest.raises(Exception, match='benchmarks/batch.py --shard'): batch_rate(path=tmp_path / 'none.json')


def test_cli(capsys):
    main(['cost', '--batch', '1e8', '--deadline', '24', '--photos-per-s', '10'])
    out = capsys.readouterr().out
    assert out.startswith('100M photos, deadline 24 h; throughput given')
    assert all(o in out for o in ('one machine (EC2)', 'sharded pods', 'SageMaker Batch Transform', 'Lambda fan-out'))
    for bad in (['--deadline', '0'], ['--photos-per-s', '-1']):
        with pytest.raises(SystemExit): main(['cost', '--batch', '1e6', *bad])
        err = capsys.readouterr().err
        assert err.startswith('dogbreeds: error:') and err.count('\n') == 1, err
