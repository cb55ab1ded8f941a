"""The place prior under load, through `dogbreeds serve`, on real PostgreSQL and Redis servers.

Locations follow a Zipf distribution (s = 1.1) over 10,000 H3 cells (one random point per cell, each with breed
counts in PostgreSQL). 32 HTTP clients (keep-alive connections, one thread each) post a photo with `?lat=&lon=` to
`dogbreeds serve` (one uvicorn worker, the toy model from `dogbreeds.testing`, so that the request cost around the geo
step stays small). Measured, side by side, for no cache (`GEO_CACHE=none`), the in-process LRU and Redis:

- database queries per 1,000 requests: the server's own `dogbreeds_geo_db_queries_total` counter from `/metrics`;
- hit rate: the answers' `prior.source` (cache, db or none);
- the geo step's latency, p50 and p99: the `geo` entry of each answer's `Server-Timing` header, timed inside the server;
- the whole request's latency seen by the clients, and the same without coordinates (no geo step) for comparison;
- the warm Redis pass again with 4 clients instead of 32: on this 2-core machine the clients, the server and Redis
  share the CPUs, so under 32 clients the geo step's time is mostly waiting for a CPU (and the GIL), not Redis;
- errors (any answer that is not a 200), including a run where Redis is killed midway and one where PostgreSQL is stopped midway.

Each cache runs two passes of `--requests` each on a fresh server: *cold* starts from an empty cache; *steady* is the
next `--requests` fresh draws from the same distribution (not a replay), i.e. a service that has been up for a
while, within the TTL. The hit rate a real deployment sees depends on how many requests arrive per TTL; the
cold pass's hit rate per window shows how it grows.

    PYTHONPATH=. python benchmarks/geo.py [--requests 50000] [--out benchmarks/results/geo.json]
"""
import argparse, http.client, json, tempfile, threading, time, urllib.request
from pathlib import Path

import numpy as np

from dogbreeds.featurestore import FeatureStore
from dogbreeds.geocache import RedisCache
from dogbreeds.testing import PostgreSQL, Redis, ServeProcess, toy_model
from conditions import Conditions

ROOT = Path(__file__).resolve().parents[1]

def world(n_cells:int, seed:int=0):
    "`n_cells` random points (one per cell) spread over the globe."
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-0.9, 0.9, n_cells))); lon = rng.uniform(-180, 180, n_cells)
    return list(zip(lat.round(5).tolist(), lon.round(5).tolist()))

def zipf_order(n_cells:int, n:int, seed:int, s:float=1.1) -> list:
    w = np.arange(1, n_cells + 1, dtype=float) ** -s
    return np.random.default_rng(seed).choice(n_cells, size=n, p=w / w.sum()).tolist()

def counter(url:str, name:str) -> float:
    "A counter's value on the server's `/metrics`."
    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(url + '/metrics', timeout=10).read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)

def load(url:str, photo:bytes, points, order, clients:int=32, midway=None, coords:bool=True, window:int=10_000) -> dict:
    "Post `photo` for each point of `points[order]` from `clients` keep-alive connections; `midway()` runs once half are done."
    host, port = url.removeprefix('http://').split(':')
    n, nxt, lock, half = len(order), iter(range(len(order))), threading.Lock(), len(order) // 2
    status, source, geo_ms, total_ms = [None] * n, [None] * n, [np.nan] * n, [np.nan] * n
    done, fired = [0], [False]
    def worker():
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            with lock: i = next(nxt, None)
            if i is None: break
            lat, lon = points[order[i]]
            t = time.perf_counter()
            try:
                c.request('POST', f'/invocations?lat={lat}&lon={lon}' if coords else '/invocations', body=photo,
                          headers={'content-type': 'image/jpeg'})
                r = c.getresponse(); body = r.read()
                total_ms[i], status[i] = (time.perf_counter() - t) * 1000, r.status
                if r.status == 200: source[i] = json.loads(body).get('prior', {}).get('source')
                timing = dict(p.strip().split(';dur=') for p in (r.getheader('server-timing') or '').split(',') if ';dur=' in p)
                if 'geo' in timing: geo_ms[i] = float(timing['geo'])
            except Exception as e:
                status[i] = type(e).__name__
                c.close(); c = http.client.HTTPConnection(host, int(port), timeout=30)
            with lock:
                done[0] += 1
                fire = midway is not None and done[0] >= half and not fired[0]
                if fire: fired[0] = True
            if fire: midway()
        c.close()
    q0, t0 = counter(url, 'dogbreeds_geo_db_queries_total'), time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    secs = time.perf_counter() - t0
    queries = counter(url, 'dogbreeds_geo_db_queries_total') - q0
    src = {k: source.count(k) for k in set(source) if k is not None}
    hits = np.array([s == 'cache' for s in source])
    pct = lambda a, q: round(float(np.nanpercentile(a, q)), 3) if not np.isnan(a).all() else None
    geo, tot = np.array(geo_ms), np.array(total_ms)
    return dict(requests=n, seconds=round(secs, 1), requests_per_s=round(n / secs), errors=sum(s != 200 for s in status),
                error_kinds=sorted({str(s) for s in status if s != 200}), sources=src,
                hit_rate=round(float(hits.mean()), 4), db_queries_per_1000=round(queries * 1000 / n, 1),
                hit_rate_per_window=[round(float(hits[i:i + window].mean()), 4) for i in range(0, n, window)],
                geo_p50_ms=pct(geo, 50), geo_p99_ms=pct(geo, 99), request_p50_ms=pct(tot, 50), request_p99_ms=pct(tot, 99))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--requests', type=int, default=50_000, help='requests per pass')
    ap.add_argument('--cells', type=int, default=10_000); ap.add_argument('--clients', type=int, default=32)
    ap.add_argument('--out', default=str(ROOT / 'benchmarks/results/geo.json'))
    a = ap.parse_args()
    cond = Conditions()
    points, root = world(a.cells), Path(tempfile.mkdtemp())
    photo = sorted((ROOT / 'data/sample/val').rglob('*.JPEG'))[0].read_bytes()
    model = toy_model(root / 'model')
    out = dict(cells=a.cells, requests_per_pass=a.requests, clients=a.clients, zipf_s=1.1, workers=1, model='toy (dogbreeds.testing)')
    cold, steady = zipf_order(a.cells, a.requests, 1), zipf_order(a.cells, a.requests, 2)
    def report(name, r):
        out[name] = r
        print(f"{name:>24}: {r['requests_per_s']:>5} req/s  hit {r['hit_rate']:.3f}  queries/1000 {r['db_queries_per_1000']:>6}  "
              f"geo p50 {r['geo_p50_ms']} p99 {r['geo_p99_ms']} ms  request p50 {r['request_p50_ms']} p99 {r['request_p99_ms']} ms  "
              f"errors {r['errors']} {r['error_kinds'] or ''}", flush=True)
    with PostgreSQL(root / 'pg') as pg, Redis(root / 'redis') as rs:
        t = time.perf_counter()
        FeatureStore(pg.url).add_many([(la, lo, b, 10) for la, lo in points for b in ('beagle', 'pug', 'dingo')])
        out['load_seconds'] = round(time.perf_counter() - t, 1)
        base = dict(GEO_DB=pg.url, GEO_MIN_OBS='20')
        def serve(**env): return ServeProcess(model, env={**base, **env})
        with serve(GEO_CACHE='none') as s:      # no cache: every lookup reads the database
            report('no_cache', load(s.url, photo, points, cold, a.clients))
        for name, spec in (('lru', 'lru'), ('redis', rs.url)):
            RedisCache(rs.url).r.flushdb()
            with serve(GEO_CACHE=spec, GEO_CACHE_TTL='3600') as s:
                report(name + '_cold', load(s.url, photo, points, cold, a.clients))
                report(name + '_steady', load(s.url, photo, points, steady, a.clients))
                if name == 'lru': report('no_coordinates', load(s.url, photo, points, steady, a.clients, coords=False))
                else:  # the same warm Redis with 4 clients: how much of the geo step's time is the 2-core machine queueing 32 clients
                    report('redis_steady_4_clients', load(s.url, photo, points, steady[:a.requests // 5], 4))
        RedisCache(rs.url).r.flushdb()
        with serve(GEO_CACHE=rs.url, GEO_CACHE_TTL='3600') as s:
            report('redis_killed_midway', load(s.url, photo, points, cold, a.clients, midway=rs.stop))
        with serve(GEO_CACHE='lru', GEO_CACHE_TTL='3600') as s:
            report('postgres_stopped_midway', load(s.url, photo, points, cold, a.clients, midway=pg.stop))
    nc = out['no_cache']['db_queries_per_1000']
    for name in ('lru_cold', 'lru_steady', 'redis_cold', 'redis_steady'):
        q = out[name]['db_queries_per_1000']
        out[name]['queries_cut'] = round(nc / q, 1) if q else None
    out['geo_added_request_p50_ms'] = round(out['lru_steady']['request_p50_ms'] - out['no_coordinates']['request_p50_ms'], 3)
    out['summary'] = dict(hit_rate=out['lru_steady']['hit_rate'], db_queries_per_1000=out['lru_steady']['db_queries_per_1000'],
                          p50_ms=out['lru_steady']['geo_p50_ms'], redis_p50_ms=out['redis_steady']['geo_p50_ms'],
                          cold_hit_rate=out['lru_cold']['hit_rate'], cold_db_queries_per_1000=out['lru_cold']['db_queries_per_1000'],
                          note='steady: the in-process LRU after one pass of warm-up, within the TTL; cold: from an empty cache')
    cols = ('no_cache', 'lru_cold', 'lru_steady', 'redis_cold', 'redis_steady', 'redis_steady_4_clients', 'no_coordinates')
    print(f"\n{'':>20} " + ' '.join(f"{c:>14}" for c in cols))
    for k in ('requests_per_s', 'db_queries_per_1000', 'queries_cut', 'hit_rate', 'geo_p50_ms', 'geo_p99_ms', 'request_p50_ms', 'request_p99_ms', 'errors'):
        print(f"{k:>20} " + ' '.join(f"{str(out[c].get(k, '')):>14}" for c in cols))
    print(f"cold LRU hit rate per {10_000:,} requests: {out['lru_cold']['hit_rate_per_window']}")
    print(f"outages: Redis killed midway: {out['redis_killed_midway']['errors']} errors, sources {out['redis_killed_midway']['sources']}; "
          f"PostgreSQL stopped midway: {out['postgres_stopped_midway']['errors']} errors, sources {out['postgres_stopped_midway']['sources']}")
    out['errors'] = sum(r['errors'] for r in out.values() if isinstance(r, dict) and 'errors' in r)
    print(f"errors in all passes: {out['errors']}")
    cond.save(a.out, out, server_workers=1, clients=a.clients)

if __name__ == '__main__': main()
