#!/usr/bin/env bash
# The GPU numbers of the README in one run (issue 15 item 5), for a machine lent for minutes:
#   - the paper CNN's training images/s with bf16 + channels_last, and the share of each step
#     the GPU waits on the DataLoader (datamodule_throughput.py);
#   - `python train.py experiment=demo trainer=gpu`: Lightning's bf16-mixed path end to end;
#   - DeepLabCut ResNet-50 on the GPU: inference frames/s at 1280x720 (b) and the whole
#     one-pass path at 4K against decode (a) and the two-pass path (c) (pipeline_speed.py);
#   - a two-camera 4K session from video to per-minute scores against its own length
#     (realtime.py).
# Each step has its own output and a share of one deadline, so a slow step cannot take the
# others' results with it.
#
#   bash benchmarks/gpu_suite.sh OUT_DIR [DLC_PROJECT] [DEADLINE_S]
# (DEVICE=cpu NET=cspnext_s SIZE=640x360 FRAMES=24 RT_FRAMES="24 48" try the script on a CPU;
#  SKIP="datamodule ..." leaves steps out.)
set -u
out=${1:?usage: gpu_suite.sh OUT_DIR [DLC_PROJECT] [DEADLINE_S]}
project=${2:-../shared/data/dlc-openfield}
deadline=$(($(date +%s) + ${3:-560}))
py=${PYTHON:-python3}
dev=${DEVICE:-cuda} net=${NET:-resnet_50} size=${SIZE:-3840x2160} frames=${FRAMES:-600}
trainer=gpu
[ "$dev" = cpu ] && trainer=cpu
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
mkdir -p "$out"
log="$out/suite.log"

step() { # step NAME CAP_S COMMAND...: stdout to NAME.out, stderr to the log
    local name=$1 cap=$2 left
    shift 2
    if [[ " ${SKIP:-} " == *" $name "* ]]; then
        echo "== $name: skipped (SKIP)" | tee -a "$log"
        return 0
    fi
    left=$((deadline - $(date +%s)))
    ((left < cap)) && cap=$left
    if ((cap < 20)); then
        echo "== $name: skipped, the deadline has passed" | tee -a "$log"
        return 1
    fi
    echo "== $name (at most ${cap} s): $*" | tee -a "$log"
    local t0=$(date +%s)
    timeout "$cap" "$@" >"$out/$name.out" 2>>"$log"
    local rc=$?
    echo "== $name: exit $rc after $(($(date +%s) - t0)) s" | tee -a "$log"
    tail -c 1500 "$out/$name.out"
    [ -s "$out/$name.out" ] || rm -f "$out/$name.out"
    return $rc
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    nproc
    $py - <<'EOF'
import importlib
for name in ("torch", "torchvision", "lightning", "numpy", "pandas", "cv2", "hydra", "tables", "deeplabcut", "painface"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as e:  # report and go on: the steps that need it fail on their own
        print(name, "IMPORT FAILED:", type(e).__name__, e)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF
} 2>&1 | tee "$out/env.txt"

step datamodule 100 $py benchmarks/datamodule_throughput.py --workers 12
step demo_gpu 130 $py train.py experiment=demo trainer=$trainer model.net.input_size=96 hydra.run.dir=/tmp/demo_gpu
step pipeline_speed 230 $py benchmarks/pipeline_speed.py --project "$project" --device "$dev" --net "$net" \
    --batch 64 --crop-size 800 --sizes "$size" --frames "$frames"
ckpt=$(ls /tmp/demo_gpu/checkpoints/epoch*.ckpt 2>/dev/null | head -1)
if [ -n "$ckpt" ]; then
    step realtime 230 $py benchmarks/realtime.py --ckpt-path "$ckpt" --project "$project" --device "$dev" \
        --net "$net" --batch 64 --workers 8 --size "$size" --frames ${RT_FRAMES:-240 720}
else
    echo "== realtime: skipped, the demo wrote no checkpoint" | tee -a "$log"
fi
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader | tee -a "$log"
