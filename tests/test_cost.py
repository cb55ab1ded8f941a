"""The cost planner: the seed's Lambda and SageMaker Serverless figures to the cent, break-evens against direct
evaluation, instance counts at the peak, price overrides, infeasible sizes, the command line with its PNG, bad input."""
import json, re, shutil, subprocess, sys, types, zipfile

import pytest

from conftest import ROOT, dogbreeds
from dogbreeds.prices import PriceError, default_prices, lambda_cost, load_prices, serverless_cost
from dogbreeds.serving_cost import cost_at, format_table, plan, resolve_inputs
from dogbreeds.geo_cost import aurora_cost, breed_names, cache_entry_bytes, cache_keys, format_geo, geo_plan, resolve_geo
from dogbreeds.core import DogbreedsError, ParameterError



def option(pl, name):
    return next(o for o in pl['options'] if o['name'] == name)


# --- the seed's figures ----------------------------------------------------------------------------------------

def test_seed_lambda_figure_to_the_cent():
    "1M requests x 500 ms x 2 GB = $16.90 with ephemeral storage at 2,560 MB (2 GB above the free 512 MB)."
    c = lambda_cost(1_000_000, 500, 2048, ephemeral_mb=2560)
    assert round(c['total'], 2) == 16.90
    assert (round(c['requests'], 2), round(c['duration'], 4), round(c['ephemeral'], 4)) == (0.20, 16.6667, 0.0309)
    assert round(lambda_cost(1_000_000, 500, 2048)['total'], 2) == 16.87  # what the 3 cents are: ephemeral storage
    # the same figure through the planner: latency measured on one thread, a 2 GB function is 1.16 vCPU
    pl = plan(1_000_000, peak_rps=5, latency_ms=500, memory_mb=2048, ephemeral_mb=2560, lambda_memory=[2048])
    assert round(option(pl, 'Lambda x86_64 2048 MB')['monthly'], 2) == 16.90


def test_seed_serverless_figure_to_the_cent():
    "5M x 500 ms = $50: the 1 GB size at $0.00002 per second, no data processing counted."
    assert round(serverless_cost(5_000_000, 500, 1024)['total'], 2) == 50.00
    # through the planner: a latency that is 500 ms on a 1 GB endpoint's CPU share (1024/1769 vCPU), no payload
    pl = plan(5_000_000, peak_rps=10, latency_ms=500 * 1024 / 1769, memory_mb=900, payload_kb=0, response_kb=0)
    o = option(pl, 'SageMaker Serverless 1 GB')
    assert round(o['latency_ms'], 6) == 500 and round(o['monthly'], 2) == 50.00


def test_lambda_tiers_free_tier_and_billing_granularity():
    P = load_prices()
    t1, t2 = (t['price'] for t in P['lambda']['x86_64']['tiers'][:2])
    big = lambda_cost(10e9 / 0.5, 500, 1024)  # 10 billion GB-s: 6 billion in tier 1, 4 in tier 2
    assert big['duration'] == pytest.approx(6e9 * t1 + 4e9 * t2)
    free = lambda_cost(1_000_000, 500, 2048, free_tier=True)
    assert free['requests'] == 0 and free['duration'] == pytest.approx(600_000 * t1)
    # duration is billed per started millisecond
    assert lambda_cost(1000, 40.2, 1024)['gb_seconds'] == lambda_cost(1000, 41, 1024)['gb_seconds']


# --- capacity ----------------------------------------------------------------------------------------------------

def test_instance_counts_at_the_peak():
    pl = plan(1e6, peak_rps=100, latency_ms=40, memory_mb=400)
    # 100 req/s x 40 ms = 4 requests in flight; at 70% utilisation
    assert option(pl, 'SageMaker ml.c6i.large')['count'] == 3      # 2 workers: 4 / 1.4 = 2.86
    assert option(pl, 'SageMaker ml.c6i.xlarge')['count'] == 2     # 4 workers: 4 / 2.8 = 1.43
    assert option(pl, 'EC2 c6i.large')['count'] == 3
    assert option(pl, 'SageMaker ml.c6i.large')['cost']['instances'] == pytest.approx(3 * 0.102 * 730)
    ha = plan(1e6, peak_rps=5, latency_ms=40, memory_mb=400, min_instances=2)
    assert {o['count'] for o in ha['options'] if o['kind'] in ('realtime', 'vm')} == {2}
    # two threads per request: half the workers, twice the instances
    two = plan(1e6, peak_rps=100, latency_ms=40, memory_mb=400, threads=2)
    assert option(two, 'SageMaker ml.c6i.large')['workers'] == 1 and option(two, 'SageMaker ml.c6i.large')['count'] == 6
    # memory caps the workers: 3,000 MB fits once in 4 GiB, twice in 8 GiB
    big = plan(1e6, peak_rps=100, latency_ms=40, memory_mb=3000)
    assert (option(big, 'SageMaker ml.c6i.large')['workers'], option(big, 'SageMaker ml.m5.large')['workers']) == (1, 2)


def test_infeasible_sizes_are_marked():
    pl = plan(1e6, peak_rps=5, latency_ms=40, memory_mb=1800)
    bad = {o['name']: o['infeasible'] for o in pl['options'] if o.get('infeasible')}
    assert sorted(n for n in bad if n.startswith('Lambda')) == sorted(
        f"Lambda {a} {m} MB" for a in ('x86_64', 'arm64') for m in (512, 1024, 1536, 1769))
    assert bad['SageMaker Serverless 1 GB'] == "below the model's 1800 MB"
    assert all(option(pl, n)['monthly'] is None for n in bad)
    assert pl['cheapest'] not in bad and option(pl, 'Lambda x86_64 2048 MB')['monthly'] > 0
    assert "below the model's 1800 MB" in format_table(pl)
    huge = plan(1e6, peak_rps=5, latency_ms=40, memory_mb=5000)
    assert 'does not fit' in option(huge, 'SageMaker ml.c6i.large')['infeasible']
    assert 'infeasible' not in option(huge, 'SageMaker ml.m5.large')
    big_photo = plan(1e6, peak_rps=5, latency_ms=40, memory_mb=400, payload_kb=5000)
    assert option(big_photo, 'SageMaker Serverless 2 GB')['infeasible'] == 'payload over the 4 MB limit'
    busy = plan(1e8, peak_rps=6000, latency_ms=40, memory_mb=400)  # 240 in flight: over the 200 limit
    assert 'over the limit of 200' in option(busy, 'SageMaker Serverless 2 GB')['infeasible']
    busier = plan(1e8, peak_rps=30000, latency_ms=40, memory_mb=400)  # 1,200 Lambdas in flight: a note, not a refusal
    o = option(busier, 'Lambda x86_64 2048 MB')
    assert o['monthly'] > 0 and o['note'] == 'over the default quota of 1,000 concurrent (can be raised)'


# --- break-evens -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('requests,peak', [(1e8, 60), (1e7, 10), (3e6, 2)])
def test_break_evens_agree_with_direct_evaluation(requests, peak):
    pl = plan(requests, peak_rps=peak, latency_ms=40, memory_mb=400)
    solved = [b for b in pl['break_even'] if b['cheaper_below']]
    assert solved, 'these traffic shapes have break-evens'
    for b in solved:
        cost = lambda name, x: cost_at(pl, name, x)['total']
        x = b['cheaper_below']
        assert cost(b['payg'], x) == pytest.approx(cost(b['always_on'], x), rel=1e-9)
        assert cost(b['payg'], x * (1 - 1e-6)) < cost(b['always_on'], x * (1 - 1e-6))
        assert cost(b['payg'], x * (1 + 1e-6)) > cost(b['always_on'], x * (1 + 1e-6))
        lo, n = b['lo'], 400
        below = [lo * (x / lo) ** (i / n) for i in range(n)]
        assert all(cost(b['payg'], r) < cost(b['always_on'], r) for r in below)
        top = b['never_cheaper_above']
        if top is not None:
            above = [top * (b['hi'] / top) ** (i / n) for i in range(1, n + 1)]
            assert all(cost(b['payg'], r) >= cost(b['always_on'], r) for r in above)
            if top > x * (1 + 1e-9):  # in between they take turns: the pay-per-use option is cheaper again somewhere
                mid = [x * (top / x) ** (i / 4000) for i in range(1, 4000)]
                assert any(cost(b['payg'], r) < cost(b['always_on'], r) for r in mid)


def test_break_even_by_hand():
    "One EC2 c7g.large ($52.925/month) against Lambda arm64 at 1,769 MB: 40 ms is $1.1213 per million requests."
    pl = plan(1e8, peak_rps=60, latency_ms=40, memory_mb=400)
    b = next(b for b in pl['break_even'] if b['payg'] == 'Lambda arm64 1769 MB' and b['always_on'] == 'EC2 c7g.large')
    per_request = 0.2e-6 + 0.040 * 1769 / 1024 * 0.0000133334
    assert b['cheaper_below'] == pytest.approx(0.0725 * 730 / per_request, rel=1e-9)


# --- prices ------------------------------------------------------------------------------------------------------

def test_price_override_file_is_merged(tmp_path):
    f = tmp_path / 'mine.json'
    f.write_text(json.dumps({'lambda': {'request_per_million': 0.4},
                             'vm': {'instances': {'t3.medium': {'hourly': 0.0416, 'vcpus': 2, 'memory_gib': 4}}}}))
    P, D = load_prices(f), default_prices()
    assert P['lambda']['request_per_million'] == 0.4
    assert P['lambda']['x86_64'] == D['lambda']['x86_64'] and P['sagemaker_serverless'] == D['sagemaker_serverless']
    assert set(P['vm']['instances']) == set(D['vm']['instances']) | {'t3.medium'}
    pl, base = plan(1e6, 5, 40, memory_mb=400, prices=f), plan(1e6, 5, 40, memory_mb=400)
    assert option(pl, 'Lambda x86_64 1024 MB')['cost']['requests'] == pytest.approx(2 * option(base, 'Lambda x86_64 1024 MB')['cost']['requests'])
    assert option(pl, 'EC2 t3.medium')['monthly'] == pytest.approx(0.0416 * 730)
    # Python keyword overrides go on top of the file
    kw = plan(1e6, 5, 40, memory_mb=400, prices=f, price_overrides={'lambda': {'request_per_million': 0.0}})
    assert option(kw, 'Lambda x86_64 1024 MB')['cost']['requests'] == 0
    r = dogbreeds('cost', '--requests', '1e6', '--peak-rps', '5', '--latency-ms', '40', '--prices', str(f))
    assert r.returncode == 0, r.stderr and 't3.medium' in r.stdout


@pytest.mark.parametrize('content,message', [
    ('{"lambda": ', 'is not valid JSON'),
    ('[1, 2]', 'must hold a JSON object'),
    ('{"lambda": {"request_per_million": "cheap"}}', 'lambda.request_per_million must be a non-negative number'),
    ('{"vm": {"instances": {"c6i.large": {"hourly": -1}}}}', 'vm.instances.c6i.large.hourly must be a positive number'),
    ('{"lambda": {"arm64": {"tiers": [{"up_to_gb_seconds": 1e9, "price": 1e-5}]}}}', 'null on the last tier only'),
    ('{"sagemaker_serverless": {"per_second_by_memory_mb": {"1GB": 0.00002}}}', 'not a size in MB'),
])
def test_malformed_price_file_is_one_line(tmp_path, content, message):
    f = tmp_path / 'bad.json'
    f.write_text(content)
    with pytest.raises(PriceError, match=message.replace('[', r'\[')): load_prices(f)
    r = dogbreeds('cost', '--requests', '1e6', '--peak-rps', '5', '--latency-ms', '40', '--prices', str(f))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr and not r.stdout


def test_prices_ship_in_the_wheel(tmp_path):
    "The price table is package data: a wheel built from the project carries it (and the training image table)."
    src = tmp_path / 'src'
    src.mkdir()
    for f in ('pyproject.toml', 'README.md'): shutil.copy(ROOT / f, src / f)
    shutil.copytree(ROOT / 'dogbreeds', src / 'dogbreeds', ignore=shutil.ignore_patterns('__pycache__'))
    r = subprocess.run([sys.executable, '-c', 'from setuptools import build_meta; print(build_meta.build_wheel("dist"))'],
                       cwd=src, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    whl = zipfile.ZipFile(src / 'dist' / r.stdout.strip().splitlines()[-1])
    assert json.loads(whl.read('dogbreeds/prices.json')) == default_prices()
    from dogbreeds.jobs import dlc_images  # and so is AWS's table of training image registries (dogbreeds.jobs)
    assert json.loads(whl.read('dogbreeds/pytorch_training_images.json')) == dlc_images()


# --- inputs --------------------------------------------------------------------------------------------------------

def test_bad_input_is_refused():
    for args, message in [((-5, 1, 40), 'requests_per_month must be above 0'), ((1e6, 5, 0), 'latency_ms must be above 0'),
                          ((1e6, -1, 40), 'peak_rps must be above 0'), ((1e9, 1, 40), 'below the average rate'),
                          ((1e6, 5, float('nan')), 'latency_ms must be a number')]:
        with pytest.raises(ParameterError, match=message): plan(*args)
    with pytest.raises(ParameterError, match="unknown instance type 'ml.p9.huge'"): plan(1e6, 5, 40, instances=['ml.p9.huge'])
    with pytest.raises(ParameterError, match="unknown VM type 'x1.tiny'"): plan(1e6, 5, 40, vms=['x1.tiny'])
    with pytest.raises(ParameterError, match='must be one of 1024'): plan(1e6, 5, 40, serverless_memory=[1500])
    with pytest.raises(ParameterError, match='threads must be an integer'): plan(1e6, 5, 40, threads=1.5)


def test_measured_figures_from_a_file(tmp_path):
    f = tmp_path / 'inference.json'
    f.write_text(json.dumps(dict(p50_ms=38.0, p95_ms=52.0, rss_mb=420.0, payload_kb=95.0, n=50, backend='onnx')))
    vals, src = resolve_inputs(latency_from=f)
    assert vals == dict(latency_ms=38.0, memory_mb=420.0, payload_kb=95.0, threads=1)
    assert src['latency_ms'] == f"measured: {f} (p50_ms)" and src['threads'] == 'assumed, not measured'
    vals, src = resolve_inputs(latency_from=f, p95=True, memory_mb=600)
    assert (vals['latency_ms'], vals['memory_mb'], src['memory_mb']) == (52.0, 600, 'given')
    r = dogbreeds('cost', '--requests', '1e6', '--peak-rps', '5', '--latency-from', str(f))
    assert r.returncode == 0, r.stderr
    assert f"latency 38 ms [measured: {f} (p50_ms)] with 1 thread(s) [assumed, not measured]; memory 420 MB [measured: {f} (rss_mb)]" in r.stdout
    f.write_text(json.dumps(dict(p95_ms=52.0)))
    with pytest.raises(DogbreedsError, match='has no p50_ms'): resolve_inputs(latency_from=f)
    with pytest.raises(DogbreedsError, match='not found'): resolve_inputs(latency_from=tmp_path / 'none.json')


def test_measure_needs_the_inference_runtime(monkeypatch):
    monkeypatch.setitem(sys.modules, 'dogbreeds.inference', None)  # as where the runtime is not installed
    with pytest.raises(DogbreedsError, match=r'--measure needs the inference runtime \(dogbreeds.inference\), which is not installed'):
        resolve_inputs(measure='exported_models/some-model')
    calls = []
    def measure(model, n): calls.append((model, n)); return dict(p50_ms=30.0, p95_ms=41.0, rss_mb=350.0, payload_kb=80.0)
    monkeypatch.setitem(sys.modules, 'dogbreeds.inference', types.SimpleNamespace(measure=measure))
    vals, src = resolve_inputs(measure='m', n=9)
    assert calls == [('m', 9)] and vals['latency_ms'] == 30.0 and src['latency_ms'] == 'measured now: m (p50_ms)'


# --- the command -------------------------------------------------------------------------------------------------

def test_cli_prints_the_table_and_writes_the_png(tmp_path):
    png = tmp_path / 'cost.png'
    r = dogbreeds('cost', '--requests', '1e6', '--peak-rps', '5', '--latency-ms', '40', '--plot', str(png))
    assert r.returncode == 0, r.stderr
    for s in ('Monthly cost for 1,000,000 requests/month', 'AWS Lambda (x86_64 | arm64)', 'SageMaker Serverless Inference',
              'SageMaker real-time endpoints', 'EC2 on-demand VM', 'Cheapest: ', 'Break-even volumes', 'Assumptions:',
              'memory 512 MB [assumed, not measured]', 'arm64 latency = x86 latency x 1 (arm_latency_factor; not measured)',
              f'plot written to {png}'):
        assert s in r.stdout, s
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 20_000


@pytest.mark.parametrize('args,message', [
    (['--requests', '-5', '--peak-rps', '1', '--latency-ms', '40'], 'requests_per_month must be above 0, got -5'),
    (['--requests', '1e6', '--peak-rps', '5', '--latency-ms', '0'], 'latency_ms must be above 0, got 0'),
    (['--requests', '1e6', '--peak-rps', '5', '--latency-ms', '40', '--instances', 'ml.p9.huge'], "unknown instance type 'ml.p9.huge'"),
    (['--requests', '1e6', '--peak-rps', '5', '--latency-ms', '40', '--plot', 'cost.jpg'], '--plot writes a PNG'),
    (['--peak-rps', '5', '--latency-ms', '40'], 'pass --requests (per month) and --peak-rps'),
])
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    r = dogbreeds('cost', *args, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"dogbreeds: error: {r.stderr.strip().split('error: ', 1)[1]}"]
    assert message in r.stderr and not r.stdout and not list(tmp_path.iterdir())


def test_planner_imports_neither_torch_nor_fastai_nor_matplotlib():
    code = ('import sys, dogbreeds.cost; from dogbreeds.serving_cost import format_table, plan; '
            'format_table(plan(1e6, 5, 40)); '
            'print(sorted(m for m in ("torch", "fastai", "matplotlib") if m in sys.modules))')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == '[]', r.stderr


# --- the serverless path with the place prior: `dogbreeds cost --geo` ------------------------------------------

def geo(**kw):
    args = dict(requests_per_month=1_000_000, peak_rps=5, hit_rate=0.95, db_queries_per_1000=60, latency_ms=40, memory_mb=1024)
    return geo_plan(**{**args, **kw})


def test_geo_arithmetic_by_hand():
    "1M requests at hit rate 0.95: 50,000 misses; 60 queries per 1,000 requests is 1.2 per miss, 60,000 a month."
    P = load_prices()
    A, V, h = P['aurora_serverless_v2']['standard'], P['elasticache_serverless']['valkey'], P['hours_per_month']
    g = geo(breeds=['pug', 'beagle'], count=12, hot_cells=1000)
    assert g['misses'] == pytest.approx(50_000) and g['queries_per_miss'] == pytest.approx(1.2) and g['queries_per_miss_derived']
    db, ec, lam = (g['components'][k] for k in ('Aurora Serverless v2', 'ElastiCache Serverless', 'Lambda'))
    assert db['queries'] == pytest.approx(60_000)
    # 60,000 queries a month is 0.023 per second: the 0.5 ACU minimum, all month
    assert (db['acus'], db['acu_hours']) == (0.5, 0.5 * h)
    assert db['compute'] == pytest.approx(0.5 * h * A['acu_hour']) and db['storage'] == pytest.approx(1.0 * A['storage_gb_month'])
    assert db['io'] == pytest.approx(60_000 * 1.0 * A['io_per_million'] / 1e6)
    # the entry: '{"pug": 12, "beagle": 12}' = 25 bytes, under 1 KB: 1 ECPU per key; 4 keys read per request, 4 written per miss
    assert g['entry_bytes'] == 25 and len(g['keys']) == 4
    assert ec['ecpu_count'] == pytest.approx(1_000_000 * 4 + 50_000 * 4)
    assert ec['ecpus'] == pytest.approx(4_200_000 * V['ecpu_per_million'] / 1e6)
    # 1,000 cells x 3 resolutions + global, each key + 25 bytes + 100 bytes of bookkeeping: far below Valkey's 100 MB minimum
    cell_key, global_key = len(g['keys'][0]), len(g['keys'][-1])
    assert g['stored_bytes'] == 3000 * (cell_key + 25 + 100) + global_key + 25 + 100
    assert ec['at_minimum'] and ec['storage'] == pytest.approx(V['min_gb'] * V['gb_hour'] * h)
    assert lam == lambda_cost(1_000_000, 40, 1024, prices=P)
    assert g['total'] == pytest.approx(lam['total'] + db['total'] + ec['total'])
    assert g['per_million'] == pytest.approx(g['total'])  # a million requests
    # without the cache: every request is a miss at 1.2 queries
    assert g['no_cache']['queries'] == pytest.approx(1_200_000)
    assert g['no_cache']['total'] == pytest.approx(lam['total'] + g['no_cache']['aurora']['total'])


def test_geo_capacity_scales_with_the_query_rate():
    h = load_prices()['hours_per_month']
    a = aurora_cost(2000 * h * 3600, peak_factor=3)  # 2,000 queries/s at 500 per ACU: 4 ACU, 12 at the peak
    assert (a['acus'], a['peak_acus'], a['acu_hours']) == (4.0, 12.0, 4.0 * h)
    assert a['compute_at_peak'] == pytest.approx(3 * a['compute'])
    assert aurora_cost(2100 * h * 3600)['acus'] == 4.5            # rounded up to the 0.5 ACU step
    assert aurora_cost(2000 * h * 3600, queries_per_acu=250)['acus'] == 8.0
    assert aurora_cost(0, min_acu=0)['compute'] == 0              # auto-pause, no queries at all
    assert aurora_cost(1, min_acu=0)['acus'] == 0.5               # any load needs a step of capacity
    assert aurora_cost(1e9 * h, peak_factor=1)['over_max']         # 277,778 queries/s: over 256 ACU
    opt = aurora_cost(1e6, io_optimized=True)
    P = load_prices()['aurora_serverless_v2']['io_optimized']
    assert opt['io'] == 0 and opt['compute'] == pytest.approx(0.5 * h * P['acu_hour'])


def test_geo_no_cache_costs_more_database():
    "At 3,000 requests a second the database without a cache needs many more ACUs; at a million a month both sit at the minimum."
    busy = geo(requests_per_month=3000 * 730 * 3600, peak_rps=6000)
    db, no = busy['components']['Aurora Serverless v2'], busy['no_cache']['aurora']
    assert no['queries'] == pytest.approx(db['queries'] / 0.05)  # 1.2 queries per request instead of 0.06
    assert no['acus'] > db['acus'] and no['total'] > db['total'] and busy['no_cache']['total'] > busy['total']
    small = geo()
    assert small['no_cache']['aurora']['queries'] > small['components']['Aurora Serverless v2']['queries']
    assert small['no_cache']['aurora']['compute'] == small['components']['Aurora Serverless v2']['compute']  # both at 0.5 ACU
    # no misses measured: the comparison takes the lookup's one query per request, and says so
    allhit = geo(hit_rate=1.0, db_queries_per_1000=0)
    assert allhit['queries_per_miss'] == 1.0 and not allhit['queries_per_miss_derived']
    assert allhit['no_cache']['queries'] == 1_000_000 and "here 1, the lookup's one query" in format_geo(allhit)


def test_geo_cache_entry_and_keys_are_what_the_cache_uses():
    "The keys priced are the keys GeoLookup reads, and the entry size is the bytes RedisCache writes for one cell."
    from dogbreeds.location import RESOLUTIONS
    from dogbreeds.geocache import RedisCache
    from dogbreeds.geolookup import GeoLookup
    counts = {b: 99_999 for b in breed_names()}
    read, written = [], {}

    class Cache:
        def get_many(self, keys): read.append(list(keys)); return [None] * len(keys)
        def set_many(self, items): written.update(items)
    store = types.SimpleNamespace(resolutions=RESOLUTIONS, queries=0, fetch=lambda cs: {c: dict(counts) for c in [*cs, 'global']})
    GeoLookup(store, Cache()).lookup(51.5, -0.12)
    assert read == [cache_keys(51.5, -0.12)] and sorted(written) == sorted(read[0])  # a miss writes every key it read
    sent = []

    class Pipe:
        def set(self, k, v, **expiry): sent.append(len(v.encode()))
        def execute(self): pass
    rc = RedisCache('redis://127.0.0.1:1/0')  # never connects: the pipeline is replaced
    rc.r = types.SimpleNamespace(pipeline=lambda transaction=False: Pipe())
    rc.set_many({'geo:x': counts})
    assert sent == [cache_entry_bytes(breed_names())]
    assert len(breed_names()) == 10 and len(breed_names(118)) == 118
    assert cache_entry_bytes(breed_names(118)) > cache_entry_bytes(breed_names())
    with pytest.raises(ParameterError, match='breeds must be at most 118'): breed_names(500)


def test_geo_measured_summary_first_then_lru_cold(tmp_path):
    f = tmp_path / 'geo.json'
    f.write_text(json.dumps(dict(cells=500, summary=dict(hit_rate=0.97, db_queries_per_1000=31.5, p50_ms=1.2),
                                 lru_cold=dict(hit_rate=0.5, db_queries_per_1000=500.0))))
    vals, src = resolve_geo(f)
    assert vals == dict(hit_rate=0.97, db_queries_per_1000=31.5, geo_ms=1.2, hot_cells=500)
    assert src['hit_rate'] == f"measured: {f} (summary.hit_rate)"
    f.write_text(json.dumps(dict(none=dict(hit_rate=0.0, db_queries_per_1000=705.0), lru_cold=dict(hit_rate=0.8287, db_queries_per_1000=167.9))))
    vals, src = resolve_geo(f)
    assert (vals['hit_rate'], vals['db_queries_per_1000']) == (0.8287, 167.9) and src['db_queries_per_1000'].endswith('(lru_cold.db_queries_per_1000)')
    assert (vals['geo_ms'], src['geo_ms'], vals['hot_cells'], src['hot_cells']) == (0.0, 'assumed, not measured', 10_000, 'assumed, not measured')
    vals, src = resolve_geo(f, hit_rate=0.9, db_queries_per_1000=120)  # overrides win
    assert (vals['hit_rate'], src['hit_rate'], vals['db_queries_per_1000']) == (0.9, 'given', 120)
    # the file in the repository (written by benchmarks/geo.py) is one of the two layouts
    vals, _ = resolve_geo(ROOT / 'benchmarks' / 'results' / 'geo.json')
    assert 0 <= vals['hit_rate'] <= 1 and vals['db_queries_per_1000'] >= 0


@pytest.mark.parametrize('content,message', [
    (None, 'not found'),
    ('{"summary": ', 'are not valid JSON'),
    ('{"none": {"hit_rate": 0}}', "has no 'summary' or 'lru_cold' object"),
    ('{"summary": {"hit_rate": 1.2, "db_queries_per_1000": 3}}', 'summary.hit_rate must be a number from 0 to 1, got 1.2'),
    ('{"lru_cold": {"hit_rate": 0.8, "db_queries_per_1000": -4}}', 'lru_cold.db_queries_per_1000 must be a number at least 0'),
])
def test_geo_measured_bad_file(tmp_path, content, message):
    f = tmp_path / 'geo.json'
    if content is not None: f.write_text(content)
    with pytest.raises(DogbreedsError, match=message.replace('(', r'\(').replace(')', r'\)')): resolve_geo(f)


def test_geo_bad_input_is_refused():
    for kw, message in [(dict(hit_rate=1.5), 'hit_rate must be at most 1'), (dict(hit_rate=-0.1), 'hit_rate must be at least 0'),
                        (dict(db_queries_per_1000=-1), 'db_queries_per_1000 must be at least 0'),
                        (dict(requests_per_month=-5), 'requests_per_month must be above 0'),
                        (dict(peak_rps=0.01), 'below the average rate'), (dict(min_acu=0.3), 'min_acu must be 0 (auto-pause) or 0.5'),
                        (dict(min_acu=300), 'min_acu must be at most 256'), (dict(queries_per_acu=0), 'queries_per_acu must be above 0'),
                        (dict(engine='memcache'), "unknown cache engine 'memcache'"), (dict(hot_cells=2.5), 'hot_cells must be an integer')]:
        with pytest.raises(ParameterError, match=message.replace('(', r'\(').replace(')', r'\)')): geo(**kw)


def test_geo_cli_prints_every_component(tmp_path):
    f = tmp_path / 'geo.json'
    f.write_text(json.dumps(dict(cells=10000, summary=dict(hit_rate=0.96, db_queries_per_1000=41.0, p50_ms=1.5))))
    r = dogbreeds('cost', '--geo', '--requests', '1e6', '--peak-rps', '5', '--latency-ms', '40', '--geo-measured', str(f))
    assert r.returncode == 0, r.stderr
    for s in ('Serverless path with the place prior: 1,000,000 requests/month',
              f"hit rate 0.96 [measured: {f} (summary.hit_rate)]; 41 database queries per 1,000 requests [measured: {f} (summary.db_queries_per_1000)]",
              'Lambda ', 'Aurora Serverless v2 (Aurora PostgreSQL-compatible, Standard): 41,000 queries/month',
              'ElastiCache Serverless (valkey): 4 keys per lookup', 'Total: $', 'per million requests',
              'Without the cache: $', 'ASSUMED: one ACU serves 500 simple indexed queries a second',
              '+ 1.5 ms geo step [measured: '):
        assert s in r.stdout, s
    r2 = dogbreeds('cost', '--geo', '--requests', '1e6', '--peak-rps', '5', '--latency-ms', '40', '--geo-measured', str(f),
                   '--cache-engine', 'redis', '--hit-rate', '0.5')
    assert r2.returncode == 0, r2.stderr
    assert 'ElastiCache Serverless (redis)' in r2.stdout and 'hit rate 0.5 [given]' in r2.stdout


@pytest.mark.parametrize('args,message,code', [  # exit 2: a value the command refuses; 1: a file it cannot read
    (['--hit-rate', '1.5', '--db-queries-per-1000', '3'], 'hit_rate must be at most 1, got 1.5', 2),
    (['--hit-rate', '0.9', '--db-queries-per-1000', '-3'], 'db_queries_per_1000 must be at least 0, got -3', 2),
    (['--geo-measured', 'missing.json'], 'geo measurements missing.json not found', 1),
    (['--hit-rate', '0.9', '--db-queries-per-1000', '3', '--min-acu', '0.3'], 'min_acu must be 0 (auto-pause) or 0.5', 2),
    (['--hit-rate', '0.9', '--db-queries-per-1000', '3', '--cache-engine', 'memcache'], "unknown cache engine 'memcache'", 2),
])
def test_geo_cli_bad_input_is_one_line(tmp_path, args, message, code):
    r = dogbreeds('cost', '--geo', '--requests', '1e6', '--peak-rps', '5', '--latency-ms', '40', *args, cwd=tmp_path)
    assert r.returncode == code and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr and not r.stdout, r.stderr
    r = dogbreeds('cost', '--geo', '--requests', '-5', '--peak-rps', '5', '--latency-ms', '40', '--hit-rate', '0.9',
                  '--db-queries-per-1000', '3', cwd=tmp_path)
    assert r.returncode == 2 and 'requests_per_month must be above 0' in r.stderr


def test_new_prices_have_date_and_source():
    D = default_prices()
    for block in ('aurora_serverless_v2', 'elasticache_serverless'):
        b = D[block]
        assert re.fullmatch(r'\d{4}-\d{2}-\d{2}', b['date']), block
        assert b['source'].startswith('https://aws.amazon.com/'), block
        assert b['read_from'] and all(isinstance(s, str) and s for s in b['read_from']), block
    assert D['aurora_serverless_v2']['standard']['acu_hour'] > 0 and D['elasticache_serverless']['valkey']['min_gb'] > 0
    with pytest.raises(PriceError, match='aurora_serverless_v2.standard.acu_hour must be a non-negative number'):
        load_prices({'aurora_serverless_v2': {'standard': {'acu_hour': -1}}})
    with pytest.raises(PriceError, match='elasticache_serverless.valkey_ha.gb_hour is missing'):
        load_prices({'elasticache_serverless': {'valkey_ha': {'min_gb': 1, 'ecpu_per_million': 1}}})
