#!/bin/bash
# Compare deepem training recipes without touching test micrographs: train on the labels of the
# first half of a bench dataset's *training* micrographs, pick all of them, and score the other
# half against their truth (deepem.metrics, one-to-one within half a diameter).
#
# usage: bench/train_split_cv.sh DATASET LABELS OUT SEED [CODE]
#   DATASET  bgal or syn19hc (reuses bench/results/DATASET: a finished `make bench`, or on a new machine
#            `python bench/compare_topaz.py ../shared/data/DATASET -o bench/results/DATASET --deepem-only`)
#   LABELS   labels_1 (full labels: 12 background patches per label, trains with --mine) or labels_0.3
#            (30 %: 12 per label, --calibrate), as the workflow's defaults do
#   OUT      output directory
#   SEED     extract and train seed
#   CODE     optional directory holding another deepem package to train and pick with (PYTHONPATH),
#            e.g. from `git archive COMMIT deepem | tar -x -C DIR`
# environment: EXTRACT_ARGS and TRAIN_ARGS, optional extra arguments of `deepem extract` / `deepem train`;
#              PREPROCESSED, another `deepem preprocess` output of the training micrographs in place
#              of the bench's (made at another --particle-px, it needs EXTRACT_ARGS="--particle-px N");
#              PREVIOUS, a finished run of this script (same DATASET and LABELS): the next round of
#              recursive training, as the workflow runs it: `deepem verify` of PREVIOUS's candidates on
#              every training micrograph, whose verdicts `deepem extract --verified` adds
# example: bench/train_split_cv.sh bgal labels_0.3 /tmp/cv/now-1 1
#          EXTRACT_ARGS="--background-ratio 4" bench/train_split_cv.sh bgal labels_0.3 /tmp/cv/ratio4-1 1
#          PREVIOUS=/tmp/cv/now-1 bench/train_split_cv.sh bgal labels_0.3 /tmp/cv/now-1-round2 2
set -euo pipefail
dataset=$1 labels=$2 out=$3 seed=$4 code=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
results=$here/results/$dataset
spec=$here/../../shared/data/$dataset/dataset.yaml
deepem=$here/../.venv/bin/deepem
python=$here/../.venv/bin/python
diameter=$($python -c "import yaml; print(yaml.safe_load(open('$spec'))['particle_diameter'])")
mapfile -t files < <(ls "$results/$labels/labels/"*.star)
half=$(( ${#files[@]} / 2 ))
train=("${files[@]:0:$half}")
negatives=()
for f in "${train[@]}"; do  # the dataset's non-particle labels of the same micrographs, as the bench passes them
    n=$(dirname "$spec")/negatives/$(basename "$f")
    if [ -f "$n" ]; then negatives+=("$n"); fi
done
complete=$([ "$labels" = labels_1 ] && echo True || echo False)
use=$([ "$complete" = True ] && echo --mine || echo --calibrate)
# the workflow's background_ratio: auto for this labelling (EXTRACT_ARGS may override it)
ratio=$($python -c "from deepem.workflow import background_ratio as r; print(r({'background_ratio': 'auto', 'labels': {'complete': $complete}}))")
pre=${PREPROCESSED:-$results/deepem/preprocessed/train}
mkdir -p "$out"
verified=()
if [ -n "${PREVIOUS:-}" ]; then
    $deepem verify --candidates "$PREVIOUS/picks/candidates.star" --model "$PREVIOUS/model/model.pt" --preprocessed "$pre" \
        --diameter "$diameter" -o "$out/verified.star" > "$out/verify.log" 2>&1
    verified=(--verified "$out/verified.star")
fi
$deepem extract --preprocessed "$pre" --positives "${train[@]}" --negatives "${negatives[@]}" "${verified[@]}" --diameter "$diameter" --seed "$seed" --background-ratio "$ratio" ${EXTRACT_ARGS:-} \
    -o "$out/patches.npz" > "$out/extract.log" 2>&1
PYTHONPATH=$code $deepem train "$out/patches.npz" $use "$pre" --positives "${train[@]}" -o "$out/model" \
    --seed "$seed" --threads 2 ${TRAIN_ARGS:-} > "$out/train.log" 2>&1
rm -rf "$out/picks"
PYTHONPATH=$code $deepem pick --model "$out/model/model.pt" --preprocessed "$pre" -o "$out/picks" --threads 2 > "$out/pick.log" 2>&1
$python - "$here" "$spec" "$out" "${files[@]:$half}" <<'EOF'
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, sys.argv[1])
from compare_topaz import pooled  # noqa: E402  the bench's one-to-one matching, pooled over micrographs

from deepem.io.coords import read_by_micrograph, read_coordinates  # noqa: E402
from deepem.metrics import summarise  # noqa: E402

spec, out, held = yaml.safe_load(open(sys.argv[2])), Path(sys.argv[3]), [Path(f).stem for f in sys.argv[4:]]
root = Path(sys.argv[2]).parent
radius = 0.5 * spec["particle_diameter"] / spec["pixel_size"]
truth = {n: read_coordinates(root / "truth" / f"{n}.star") for n in held}
picks = {n: read_coordinates(out / f"picks/{n}.star") for n in held}
f1 = summarise(*pooled({n: (xy, np.ones(len(xy))) for n, xy in picks.items()}, truth, radius))["f1"]
ranked = {Path(k).stem: v for k, v in read_by_micrograph(out / "picks/candidates.star").items()}
m = summarise(*pooled(ranked, truth, radius))
print(f"{out.name}: {len(held)} held-out training micrographs, F1 {f1:.4f}, AP {m['average_precision']:.4f}, "
      f"best F1 {m['best_f1']:.4f}")
EOF
