"""`pack.py` killed by SIGKILL right after writing its shard N + 1, before recording it:

    ZOO_KILL_AFTER_SHARDS=3 python tests/data/faulty_pack.py workers=1 <overrides>

(one worker: the shards are written in this process, where the fault is installed).
"""

import os
import runpy
import signal
import sys
from pathlib import Path

from zoo.data import packing

ROOT = Path(__file__).resolve().parents[2]
LIMIT = int(os.environ["ZOO_KILL_AFTER_SHARDS"])
_write_shard = packing._write_shard
_written = []


def write_shard_then_die(task):
    entry = _write_shard(task)
    _written.append(entry)
    if len(_written) > LIMIT:  # on disk under its final name, but never recorded
        os.kill(os.getpid(), signal.SIGKILL)
    return entry


packing._write_shard = write_shard_then_die
sys.argv[0] = str(ROOT / "pack.py")
runpy.run_path(str(ROOT / "pack.py"), run_name="__main__")
