#!/bin/bash
# A DeepFace run at folder scale, as a user would make it: 200 steps on FOLDER, SIGKILL at
# step 120 (after the checkpoint of step 100), `resume=auto`, then `evaluate.py` on the run.
# Logs, wall times and peak RSS (GNU time) land in OUT.
#   python bench/make_faces.py /data/faces-1m --images 1000000 --identities 10000
#   bench/scale_run.sh /data/faces-1m /tmp/scale-run
set -euo pipefail
FOLDER=$1
OUT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
mkdir -p "$OUT"
STORE="sqlite:///$OUT/mlflow.db"
COMMON=(model=deepface data=folder "data.source.path=$FOLDER" trainer.epochs=1
        trainer.steps_per_epoch=200 data.split.validation=0.01 data.split.test=0.01
        trainer.checkpoint.every_steps=50 "tracking.uri=$STORE" tracking.experiment=scale
        trainer.verbose=2 "hydra.run.dir=$OUT/outputs")
cd "$OUT"
ZOO_FAULT=kill@120 /usr/bin/time -v "$PY" "$ROOT/tests/training/faulty_train.py" "${COMMON[@]}" \
  > first.log 2>&1 || true   # ends by SIGKILL
/usr/bin/time -v "$PY" "$ROOT/train.py" "${COMMON[@]}" resume=auto > resumed.log 2>&1
RUN=$(grep -o 'resume=[0-9a-f]\{32\}' resumed.log | tail -1 | cut -d= -f2)
/usr/bin/time -v "$PY" "$ROOT/evaluate.py" "run_id=$RUN" "tracking.uri=$STORE" \
  tracking.experiment=scale robustness.max_images=1000 robustness.max_shift=2 > evaluate.log 2>&1
grep -h -E "Checked|Data cache|Resumed from|Elapsed|Maximum resident|Test:|Evaluation run" \
  first.log resumed.log evaluate.log
