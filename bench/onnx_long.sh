#!/usr/bin/env bash
# `--engine onnx` against torch on long documents (issue 40, part 2): `ulmfit evaluate RUN TEXTS` with each engine,
# interleaved round by round by bench/start_time.py (median wall and CPU seconds, peak RSS of each command), on
# one thread. BEFORE: a checkout of the code before the change (its graphs are cached under their own key), run
# through PYTHONPATH; "onnx, one call a batch" is today's graph fed the whole batch at once (ATTENTION_CELLS
# raised), to tell the fused attention's share from the smaller calls'. Each engine runs once first, so the
# graphs' export is not timed.
#   bench/onnx_long.sh RUN TEXTS.csv BEFORE [ROUNDS]      (TEXTS: IMDb test reviews of 512 tokens and more)
set -euo pipefail
RUN=${1:?usage: bench/onnx_long.sh RUN TEXTS.csv BEFORE [ROUNDS]}
TEXTS=${2:?}
BEFORE=${3:?}
ROUNDS=${4:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
EV="evaluate $RUN $TEXTS --threads 1 --json"
WHOLE="from ulmfit_cli.inference import onnx_engine as o; o.ATTENTION_CELLS = 1 << 40
from ulmfit_cli.cli.main import app; app(prog_name='ulmfit')"
PYTHONPATH=$BEFORE python -m ulmfit_cli $EV --engine onnx > /dev/null
python -m ulmfit_cli $EV --engine onnx > /dev/null
python "$HERE/start_time.py" --rounds "$ROUNDS" \
  "torch=python -m ulmfit_cli $EV" \
  "onnx before=PYTHONPATH=$BEFORE python -m ulmfit_cli $EV --engine onnx" \
  "onnx now=python -m ulmfit_cli $EV --engine onnx" \
  "onnx now, one call a batch=python -c \"$WHOLE\" $EV --engine onnx"
