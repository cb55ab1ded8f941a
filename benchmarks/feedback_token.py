"""The time a feedback token adds to an answer that used a place.

The same request (a photo at Sydney, a warm in-process LRU in front of a SQLite feature store) answered by the one
request pipeline (`dogbreeds.handlers.Service`), with `FEEDBACK_KEY` set and unset, alternately, so both see the same
machine state; and the token step alone (`feedback_fields`: the key read from the settings, the HMAC-SHA256 and the
encoding) and the check feedback makes (`Signer.verify`). Prints p50 and p99 of each, and optionally writes JSON.

    PYTHONPATH=. python benchmarks/feedback_token.py [--model DIR] [--n 2000] [--out benchmarks/results/feedback_token.json]

Without `--model`, a toy model (`dogbreeds.testing.toy_model`) stands in: the token's cost does not depend on it.
"""
import argparse, json, os, platform, statistics, tempfile, time
from pathlib import Path

import numpy as np

from dogbreeds.core import sample_path
from dogbreeds.featurestore import FeatureStore
from dogbreeds.location import cells
from dogbreeds.geocache import feedback_fields
from dogbreeds.handlers import Service
from dogbreeds.protocol import Request
from dogbreeds.tokens import signer

SYDNEY = (-33.87, 151.21)
KEY = 'benchmark-key-' + 'b' * 32


def stats(v) -> dict: return dict(p50_ms=1000 * float(np.percentile(v, 50)), p99_ms=1000 * float(np.percentile(v, 99)), n=len(v))


def timed(fn, n) -> list:
    out = []
    for _ in range(n):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', help='a model folder (default: a toy model)')
    ap.add_argument('--n', type=int, default=2000, help='requests per setting')
    ap.add_argument('--out', default=str(Path(__file__).resolve().parent / 'results' / 'feedback_token.json'))
    a = ap.parse_args()
    from conditions import Conditions
    cond = Conditions()
    root = Path(tempfile.mkdtemp())
    model = a.model
    if not model:
        from dogbreeds.testing import toy_model
        model = toy_model(root / 'toy')
    db = root / 'geo.db'
    FeatureStore(db).add_many([(*SYDNEY, 'dingo', 500), (*SYDNEY, 'beagle', 50)])
    os.environ.update(GEO_DB=str(db), GEO_CACHE='lru')
    os.environ.pop('FEEDBACK_KEY', None)
    svc = Service.load(model)
    jpeg = sorted((sample_path() / 'val').glob('*/*'))[0].read_bytes()
    req = Request(image=jpeg, lat=SYDNEY[0], lon=SYDNEY[1])
    for _ in range(20): svc(req)                      # warm: the cells cached, the model's first runs done
    on, off = [], []
    for i in range(2 * a.n):                          # alternate, so both settings see the same machine state
        if i % 2: os.environ['FEEDBACK_KEY'] = KEY
        else: os.environ.pop('FEEDBACK_KEY', None)
        t = time.perf_counter(); out = svc(req); dt = time.perf_counter() - t
        assert ('feedback_token' in out) == bool(i % 2)
        (on if i % 2 else off).append(dt)
    os.environ['FEEDBACK_KEY'] = KEY
    version, where = svc.model.version, cells(*SYDNEY)
    token_step = timed(lambda: feedback_fields('0123456789abcdef', where, version, 'r' * 32), a.n)
    token = feedback_fields('0123456789abcdef', where, version, 'r' * 32)['feedback_token']
    verify = timed(lambda: signer().verify(token, version), a.n)
    res = dict(answer_without_token=stats(off), answer_with_token=stats(on), token_step=stats(token_step),
               verify=stats(verify), extra_p50_ms=1000 * (statistics.median(on) - statistics.median(off)),
               token_chars=len(token), machine=platform.processor() or platform.machine(), model=str(a.model or 'toy'))
    for k in ('answer_without_token', 'answer_with_token', 'token_step', 'verify'):
        print(f"{k:22s} p50 {res[k]['p50_ms']:8.3f} ms   p99 {res[k]['p99_ms']:8.3f} ms   (n={res[k]['n']})")
    print(f"the token adds {res['extra_p50_ms']:.3f} ms to an answer's p50 ({len(token)} characters)")
    res['errors'] = 0
    cond.save(a.out, res)


if __name__ == '__main__': main()
