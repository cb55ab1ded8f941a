"""Issue 13: the geo step (coordinates → cells → cached prior) under load, on real PostgreSQL and Redis servers.

Locations follow a Zipf distribution (s = 1.1) over 10,000 H3 cells; 32 client threads each run lookups through one
`GeoLookup` (the object `dogbreeds serve` holds per worker). Measured, side by side: database queries per 1,000
requests and hit rate with no cache, the in-process LRU and Redis; the geo step's latency (p50, p99) for each; and two
runs with an outage midway (Redis killed; PostgreSQL stopped) that must finish with 0 errors.

NOTE: this drives the geo step in process with 32 threads, not 32 HTTP clients against `dogbreeds serve` (not done
for lack of time); the latency is the geo step alone, which is what the issue's goal is about.

    PYTHONPATH=. python benchmarks/geo.py [--requests 20000] [--out benchmarks/results/geo.json]
"""
import argparse, json, logging, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dogbreeds.featurestore import FeatureStore
from dogbreeds.geocache import GeoLookup, LRUCache, RedisCache
from dogbreeds.testing import PostgreSQL, Redis

class NoCache:
    "Every lookup goes to the database."
    def get_many(self, keys): return [None] * len(keys)
    def set_many(self, items): pass
    def delete(self, keys): pass

def world(n_cells:int, seed:int=0):
    "`n_cells` random land-agnostic points (one per cell), each with a few breed counts."
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-0.9, 0.9, n_cells))); lon = rng.uniform(-180, 180, n_cells)
    return list(zip(lat.tolist(), lon.tolist()))

def run(g:GeoLookup, points, order, clients:int=32, midway=None):
    "Lookups of `points[order]` from `clients` threads; `midway()` is called once half are done. Figures."
    lat_ms, errors, sources, lock, done = [], 0, {}, threading.Lock(), [0]
    half = len(order) // 2
    def one(i):
        nonlocal errors
        t = time.perf_counter()
        try: p, info = g.lookup(*points[i]); src = info['source']
        except Exception: src = 'error'
        dt = (time.perf_counter() - t) * 1000
        with lock:
            lat_ms.append(dt); sources[src] = sources.get(src, 0) + 1; done[0] += 1
            if src == 'error': errors += 1
            fire = midway is not None and done[0] == half
        if fire: midway()
    q0, t0 = g.store.queries, time.perf_counter()
    with ThreadPoolExecutor(clients) as ex: list(ex.map(one, order))
    n = len(order)
    return dict(requests=n, seconds=round(time.perf_counter() - t0, 2), errors=errors, sources=sources,
                db_queries_per_1000=round((g.store.queries - q0) * 1000 / n, 1),
                hit_rate=round(sources.get('cache', 0) / n, 4),
                p50_ms=round(float(np.percentile(lat_ms, 50)), 3), p99_ms=round(float(np.percentile(lat_ms, 99)), 3))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--requests', type=int, default=20000); ap.add_argument('--cells', type=int, default=10000)
    ap.add_argument('--clients', type=int, default=32); ap.add_argument('--out', default='benchmarks/results/geo.json')
    a = ap.parse_args()
    logging.getLogger('dogbreeds').setLevel(logging.ERROR)  # the outage runs would log every degraded lookup
    points = world(a.cells)
    rng = np.random.default_rng(1)
    ranks = np.arange(1, a.cells + 1); w = ranks ** -1.1; w /= w.sum()
    order = rng.choice(a.cells, size=a.requests, p=w).tolist()
    root = Path(tempfile.mkdtemp())
    out = dict(cells=a.cells, requests=a.requests, clients=a.clients, zipf_s=1.1)
    with PostgreSQL(root / 'pg') as pg, Redis(root / 'redis') as rs:
        store = FeatureStore(pg.url)
        t = time.perf_counter()
        store.add_many([(la, lo, b, 10) for la, lo in points for b in ('beagle', 'pug', 'dingo')])
        out['load_seconds'] = round(time.perf_counter() - t, 1)
        caches = dict(none=NoCache, lru=lambda: LRUCache(ttl=300), redis=lambda: RedisCache(rs.url, ttl=300))
        for name, make in caches.items():
            if name == 'redis': make().r.flushdb()
            g = GeoLookup(store, make(), min_obs=20)
            out[name + '_cold'] = run(g, points, order, a.clients)     # from an empty cache
            out[name] = run(g, points, order, a.clients)               # the same traffic again: the steady state
            print(name, 'cold', out[name + '_cold'], '\nwarm', out[name], flush=True)
        RedisCache(rs.url).r.flushdb()
        out['redis_killed_midway'] = run(GeoLookup(store, RedisCache(rs.url, ttl=300), min_obs=20), points, order, a.clients, rs.stop)
        print('redis killed midway', out['redis_killed_midway'], flush=True)
        out['postgres_stopped_midway'] = run(GeoLookup(store, LRUCache(ttl=300), min_obs=20), points, order, a.clients, pg.stop)
        print('postgres stopped midway', out['postgres_stopped_midway'], flush=True)
    n, l = out['none']['db_queries_per_1000'], out['lru_cold']['db_queries_per_1000']
    out['queries_cut_lru_cold'] = round(n / l, 1) if l else None   # the warm pass replays seen cells: no query at all
    cols = ('none', 'lru_cold', 'lru', 'redis_cold', 'redis')
    print(f"\n{'':>20} " + ' '.join(f"{c:>11}" for c in cols))
    for k in ('db_queries_per_1000', 'hit_rate', 'p50_ms', 'p99_ms', 'errors'):
        print(f"{k:>20} " + ' '.join(f"{out[c][k]:>11}" for c in cols))
    print(f"queries cut by the LRU from cold: {out['queries_cut_lru_cold']}x; outages: errors {out['redis_killed_midway']['errors']} (Redis), "
          f"{out['postgres_stopped_midway']['errors']} (PostgreSQL)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(out, indent=1) + '\n')

if __name__ == '__main__': main()
