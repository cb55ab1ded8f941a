"""What a benchmark's figures were measured under, written into every benchmark's JSON by one helper.

    from conditions import Conditions        # benchmarks/ is on sys.path when a script in it runs
    cond = Conditions()                      # at the start: the load average before, the thread settings
    ...
    cond.save(path, results)                 # results + {'conditions': {...}}, with the load average after

A timing taken while other work runs is a different figure: the load average before and after says whether the
machine was quiet (on a machine of N CPUs, a load average well under N), and the thread settings say how many
threads the timed code could use.
"""
import json, os, platform, sys, time
from pathlib import Path

THREAD_VARS = ('DOGBREEDS_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')


def load_average() -> list:
    "The 1, 5 and 15 minute load averages (None where the platform has none)."
    try: return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError): return None


def threads(**extra) -> dict:
    "The thread settings in force: the environment variables that set them, torch's when it is loaded, and `extra`."
    out = {k: os.environ.get(k) for k in THREAD_VARS}
    if 'torch' in sys.modules:
        import torch
        out['torch_threads'] = torch.get_num_threads()
    out['cpus'] = os.cpu_count()
    try: out['cpus_usable'] = len(os.sched_getaffinity(0))
    except AttributeError: pass
    return {**out, **extra}


class Conditions:
    "The load average when it was made and when `finish`ed, the thread settings, the machine."
    def __init__(self):
        self.before, self.started = load_average(), time.strftime('%Y-%m-%dT%H:%M:%S')

    def finish(self, **thread_settings) -> dict:
        "`thread_settings`: what the benchmark chose itself (e.g. `onnxruntime_threads=2`)."
        return dict(load_average_before=self.before, load_average_after=load_average(), threads=threads(**thread_settings),
                    started=self.started, finished=time.strftime('%Y-%m-%dT%H:%M:%S'), machine=platform.machine(),
                    python=platform.python_version())

    def note(self) -> str:
        "One line for the printed output."
        return f"load average {self.before} before, {load_average()} after; {os.cpu_count()} CPUs"

    def save(self, path, results:dict, **thread_settings) -> Path:
        "Write `results` with these conditions to the JSON file `path`; return the path."
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**results, 'conditions': self.finish(**thread_settings)}, indent=2, default=str) + '\n')
        print(f"{self.note()}; written to {path}")
        return path


def imagewoof(root:Path=Path(__file__).resolve().parent.parent) -> Path|None:
    """The project's read-only Imagewoof (`shared/datasets/imagewoof2-160`) beside `root` or beside any folder above
    it (a git worktree sits deeper than the checkout); None where there is none."""
    for d in root.parents:
        if (p := d / 'shared' / 'datasets' / 'imagewoof2-160').is_dir(): return p
    return None
