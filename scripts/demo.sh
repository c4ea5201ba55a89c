#!/usr/bin/env bash
# The offline demo: set up, export the random-weight demo model, make a few synthetic
# tracks, index them, search by text and by example, and evaluate retrieval on them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
py=.venv/bin/python
export TTMR_MODEL_DIR=${TTMR_MODEL_DIR:-models/demo}
if [ ! -f "$TTMR_MODEL_DIR/manifest.json" ]; then
    $py export/to_onnx.py --demo --output "$TTMR_MODEL_DIR"
else
    echo "demo: using the model already exported in $TTMR_MODEL_DIR"
fi
music=demo_out/music
$py -m export.synthetic "$music"
rm -rf demo_out/catalog  # a catalog of an earlier export is another model: refused
$py -m runtime index "$music" --out demo_out/catalog
echo
echo '$ python -m runtime search demo_out/catalog "a calm solo piano piece in D" -k 3'
$py -m runtime search demo_out/catalog "a calm solo piano piece in D" -k 3
echo
echo "\$ python -m runtime search demo_out/catalog --like $music/piano_in_d.wav -k 3"
$py -m runtime search demo_out/catalog --like "$music/piano_in_d.wav" -k 3
echo
echo '$ python -m runtime eval retrieval demo_out/catalog examples/demo_ground_truth.json --out demo_out/retrieval.json'
$py -m runtime eval retrieval demo_out/catalog examples/demo_ground_truth.json --out demo_out/retrieval.json
echo
echo "demo: the model has RANDOM weights, so these rankings are meaningless; see README.md"
