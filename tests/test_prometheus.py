"""deploy/monitoring: promtool checks the scrape config and the alert rules (and the dashboard's queries), the
Grafana dashboard has the structure Grafana reads, and a real Prometheus (Debian's binary) scrapes `dogbreeds serve`
while photos are sent: the series come back through its HTTP API, and `dogbreeds monitor --prometheus` reads a window."""
import json, shutil, subprocess, time, urllib.request
from pathlib import Path

import pytest

from dogbreeds.testing import PrometheusServer, ServeProcess, toy_model

ROOT = Path(__file__).resolve().parent.parent
MON = ROOT / 'deploy' / 'monitoring'
VAL = sorted((ROOT / 'data' / 'sample' / 'val').rglob('*.JPEG'))
PROMTOOL = shutil.which('promtool')
needs_prometheus = pytest.mark.skipif(not PROMTOOL or not shutil.which('prometheus'),
                                      reason="Debian's prometheus package is not installed: make system-packages")


def promtool(*args):
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


@needs_prometheus
def test_promtool_config_and_rules(tmp_path):
    r = promtool('check', 'config', MON / 'prometheus.yml')
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool('check', 'rules', MON / 'alerts.yml')
    assert r.returncode == 0 and 'SUCCESS: 7 rules found' in r.stdout, r.stdout + r.stderr
    text = (MON / 'alerts.yml').read_text()
    for name in ('HighErrorRate', 'HighLatencyP99', 'NoTraffic', 'ModelVersionChanged', 'PredictionDrift'):
        assert f'alert: Dogbreeds{name}' in text
    bad = tmp_path / 'bad.yml'
    bad.write_text('groups:\n- name: x\n  rules:\n  - alert: A\n    expr: sum(rate(x[5m]) >\n')
    assert promtool('check', 'rules', bad).returncode != 0  # the check can fail


@needs_prometheus
def test_grafana_dashboard_structure(tmp_path):
    d = json.loads((MON / 'grafana-dashboard.json').read_text())
    assert d['title'] and d['uid'] and isinstance(d['schemaVersion'], int) and d['panels']
    ids, exprs = set(), []
    for p in d['panels']:
        assert p['id'] not in ids and p['type'] in ('timeseries', 'stat', 'barchart', 'heatmap', 'table') and p['title']
        ids.add(p['id'])
        assert set(p['gridPos']) == {'x', 'y', 'w', 'h'} and p['gridPos']['x'] + p['gridPos']['w'] <= 24
        assert p['targets'] and all(t['expr'] and t['refId'] for t in p['targets'])
        exprs += [t['expr'] for t in p['targets']]
    families = {'dogbreeds_requests_total', 'dogbreeds_request_duration_seconds_bucket', 'dogbreeds_predictions_total',
                'dogbreeds_top1_probability_bucket', 'dogbreeds_not_a_dog_total', 'dogbreeds_errors_total',
                'dogbreeds_model_info', 'dogbreeds_drift_psi', 'dogbreeds_request_bytes_bucket'}
    assert all(any(f in e for e in exprs) for f in families)
    rules = tmp_path / 'dash.yml'  # every query parses: promtool checks them as recording rules
    rules.write_text(json.dumps({'groups': [{'name': 'dash', 'rules': [{'record': f'dash:q{i}', 'expr': e} for i, e in enumerate(exprs)]}]}))
    r = promtool('check', 'rules', rules)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_prometheus
def test_real_prometheus_scrapes_serve(tmp_path):
    model = toy_model(tmp_path / 'toy', threshold=0.45)
    photos = [f.read_bytes() for f in VAL[:12]]
    with ServeProcess(model) as s:
        target = s.url.removeprefix('http://')
        with PrometheusServer(tmp_path / 'prom', [target], interval='1s', rule_files=[MON / 'alerts.yml']) as prom:
            deadline = time.monotonic() + 30  # scraped once before any answer: the series start at 0
            while not prom.query('dogbreeds_top1_probability_count') and time.monotonic() < deadline: time.sleep(0.3)
            time.sleep(1.5)
            answers = []
            for p in photos:
                req = urllib.request.Request(s.url + '/invocations', data=p, headers={'content-type': 'image/jpeg'})
                with urllib.request.urlopen(req, timeout=30) as r: answers.append(json.loads(r.read()))
            q = 'sum(dogbreeds_requests_total{route="/invocations",status="200"})'
            deadline, got = time.monotonic() + 30, None
            while time.monotonic() < deadline:
                res = prom.query(q)
                if res and float(res[0]['value'][1]) == len(photos): got = res; break
                time.sleep(0.5)
            assert got, prom.query(q)
            version = answers[0]['model']['version']
            info = prom.query('dogbreeds_model_info')
            assert info and info[0]['metric']['version'] == version and info[0]['metric']['job'] == 'dogbreeds'
            top = {}
            for a in answers: top[a['predictions'][0]['breed']] = top.get(a['predictions'][0]['breed'], 0) + 1
            by = {r['metric']['breed']: float(r['value'][1]) for r in prom.query('sum by (breed) (dogbreeds_predictions_total) > 0')}
            assert by == top
            p99 = prom.query('histogram_quantile(0.99, sum by (le) (dogbreeds_request_duration_seconds_bucket{stage="total"}))')
            assert 0 < float(p99[0]['value'][1]) <= 10
            assert prom.query('up{job="dogbreeds"}')[0]['value'][1] == '1'
            with urllib.request.urlopen(prom.url + '/api/v1/rules', timeout=10) as r:
                groups = json.loads(r.read())['data']['groups']
            assert len(groups[0]['rules']) == 7  # the alert rules load into the real server
            # dogbreeds monitor reads its window from the same API
            from dogbreeds.monitor import window_from_prometheus
            w = window_from_prometheus(prom.url, '5m')  # increase() extrapolates to the window's edges: counts are close, not exact
            assert abs(w['n'] - len(photos)) <= 2 and set(w['breeds']) == set(top), w
            assert abs(sum(w['top1']['counts']) - len(photos)) <= 2 and abs(w['not_a_dog']['n'] - len(photos)) <= 2
            nd = sum(not a['is_dog'] for a in answers)
            assert abs(w['not_a_dog']['count'] - nd) <= max(1, nd // 5)
