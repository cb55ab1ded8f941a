"""Issue 13, feedback by photo id: what it adds to each answer that has a location, side by side with the geo step
without it. An answer now hashes the photo (`photo_id`, SHA-256 of the bytes, timed as its own stage) and keeps
photo_id → (lat, lon) in the geo cache (`GeoLookup.remember`: one more write; on Redis one more round trip).

One client thread, a warm cache, a real Redis on loopback; a random-noise 1600x1200 JPEG (≈1.7 MB, a large phone photo).

    PYTHONPATH=. python benchmarks/geo_photo_id.py [--n 3000]
"""
import argparse, io, tempfile, time
from pathlib import Path

import numpy as np
from PIL import Image

from dogbreeds.featurestore import FeatureStore
from dogbreeds.geocache import GeoLookup, LRUCache, RedisCache, photo_id
from dogbreeds.testing import Redis
from conditions import Conditions


def ms(v, p): return 1000 * float(np.percentile(v, p))

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--n', type=int, default=3000)
    ap.add_argument('--out', default=str(Path(__file__).resolve().parent / 'results' / 'geo_photo_id.json'))
    a = ap.parse_args()
    cond, res = Conditions(), dict(n=a.n)
    rng = np.random.default_rng(0)
    b = io.BytesIO(); Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(b, 'JPEG', quality=90)
    jpeg = b.getvalue()
    h = []
    for _ in range(500):
        t = time.perf_counter(); photo_id(jpeg); h.append(time.perf_counter() - t)
    print(f"photo_id of a {len(jpeg) / 1e6:.2f} MB JPEG: p50 {ms(h, 50):.3f} ms, p99 {ms(h, 99):.3f} ms")
    res['photo_id'] = dict(mb=len(jpeg) / 1e6, p50_ms=ms(h, 50), p99_ms=ms(h, 99))
    root = Path(tempfile.mkdtemp())
    store = FeatureStore(root / 'g.db'); store.add_many([(51.5, -0.12, 'beagle', 40)])
    with Redis(root / 'redis') as rs:
        for name, cache in (('lru', LRUCache(ttl=300)), ('redis', RedisCache(rs.url, ttl=300))):
            g = GeoLookup(store, cache, photo_ttl=86400); g.lookup(51.5, -0.12); pid = photo_id(jpeg)
            alone, both = [], []
            for _ in range(a.n):
                t = time.perf_counter(); g.lookup(51.5, -0.12); alone.append(time.perf_counter() - t)
                t = time.perf_counter(); g.lookup(51.5, -0.12); g.remember(pid, 51.5, -0.12); both.append(time.perf_counter() - t)
            print(f"{name:5s} geo step: lookup alone p50 {ms(alone, 50):.3f} ms, p99 {ms(alone, 99):.3f} ms | "
                  f"lookup + remember p50 {ms(both, 50):.3f} ms, p99 {ms(both, 99):.3f} ms")
            res[name] = dict(lookup_p50_ms=ms(alone, 50), lookup_p99_ms=ms(alone, 99), both_p50_ms=ms(both, 50), both_p99_ms=ms(both, 99))
    res['errors'] = 0
    cond.save(a.out, res)

if __name__ == '__main__': main()
