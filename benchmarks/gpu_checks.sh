#!/usr/bin/env bash
# The GPU checks of `dreamlift generate` in one run, sized for a short lease on one GPU
# (about 8 minutes on an H200):
#
#   bash benchmarks/gpu_checks.sh OUT_DIR        (dreamlift and gsplat importable; CUDA)
#
# 1. gsplat's CUDA extension is built in the background (CPU) while the GPU measures.
# 2. Iteration split of the paper preset with SD 2.1-base's full-size architecture (random
#    weights), fp16, 512², NeRF with GE3D and SDS: steps 3-6 (as in the H200 run of commit
#    7de7805), then after its first occupancy-mask update (step 16), when empty space is skipped, at 512²
#    and at 128² renders resized to 512² for the prior. (The torch rasteriser's split on a
#    GPU, 21.6 % / 5.3 % prior, is in results/gpu_h200/cost_paper_fp16_torch.json; Gaussians
#    on a GPU go through gsplat, step 4.)
# 3. The real-weights path end to end: the same model saved as a diffusers folder, then
#    `dreamlift generate "a hamburger" --prior FOLDER --device cuda --preset paper`, and
#    `--resume` of that run to more steps.
# 4. The new methods' paper presets on CUDA: `edit --preset paper` (shortened stages) on the
#    random-weight SD 2.1 folder and the hamburger run, `invert --preset paper` on toy-eg3d,
#    `blend --preset paper` (W 300, joint PTI 100, 200 blending steps) on two world heads,
#    `face --preset paper` (W+ 1000, PTI 400, toy-sd-heads) with an edit and a light,
#    `handles --preset paper` on toy-sd-depth, the paper's passes and with
#    `--keep-background --carry-steps 38` (the CPU scores: docs/benchmarks.md).
# 5. Once gsplat is built: the backend parity tests, benchmarks/rasterize_cuda.py (parity and
#    speed at the paper preset's sizes), the split again through gsplat, and
#    benchmarks/batch.py's GE3D table at --batch 1 and 8 on the GPU, then the fast SDS run
#    (200 steps) and the README main job end to end on CUDA, SDS also with the eager UNet.
# Each step has its own time limit, and every result is a file in OUT_DIR as soon as it exists.
set -u
OUT=${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SCRATCH=${SCRATCH:-/tmp/dreamlift-gpu}
rm -rf "$SCRATCH" && mkdir -p "$SCRATCH"
step() { echo "== [+${SECONDS}s] $*"; }

step "gsplat build in the background"
(
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-12} timeout 480 \
        "$PY" -c "from gsplat.cuda._backend import _C; assert _C is not None, 'no CUDA toolkit'" \
        >"$SCRATCH/gsplat_build.log" 2>&1
    echo $? >"$SCRATCH/gsplat_build.rc"
) &

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

step "split: paper preset, SD 2.1-base size, fp16, NeRF, steps 3-6"
timeout 90 "$PY" benchmarks/generate_cost.py --device cuda --dtype float16 --preset paper \
    --fields nerf --guidances ge3d sds --steps 4 --warmup 2 \
    --out "$OUT/cost_paper_fp16_nerf.json"

step "split: NeRF after its first occupancy update (steps 17-20), torch"
timeout 120 "$PY" benchmarks/generate_cost.py --device cuda --dtype float16 --preset paper \
    --fields nerf --guidances ge3d sds --steps 4 --warmup 16 \
    --out "$OUT/cost_paper_fp16_nerf_steady.json"
step "split: NeRF rendered at 128² and resized to the prior's 512² (as threestudio renders NeRFs)"
timeout 60 "$PY" benchmarks/generate_cost.py --device cuda --dtype float16 --preset paper \
    --fields nerf --guidances ge3d sds --steps 4 --warmup 16 --resolution 128 \
    --out "$OUT/cost_paper_fp16_nerf_128.json"

step "the random-weight model as a diffusers folder"
timeout 45 "$PY" benchmarks/generate_cost.py --device cuda --dtype float16 \
    --save-folder "$SCRATCH/sd21"

step "dreamlift generate --prior FOLDER --device cuda --preset paper, then --resume"
run=(-m dreamlift generate "a hamburger" --prior "$SCRATCH/sd21" --device cuda --preset paper
    --out "$SCRATCH/hamburger" --profile --quiet --set checkpoint_every=6
    --set turntable_frames=24 --set gaussians.backend=torch)
timeout 100 "$PY" "${run[@]}" --steps 12
timeout 45 "$PY" "${run[@]}" --steps 16 --resume
for f in summary.json metrics.jsonl turntable.gif; do
    cp "$SCRATCH/hamburger/$f" "$OUT/hamburger_$f" 2>/dev/null
done
ls -la "$SCRATCH/hamburger" 2>/dev/null

step "edit --preset paper on the random-weight SD 2.1 folder (probe, revise, IPG on CUDA)"
timeout 120 "$PY" -m dreamlift edit "$SCRATCH/hamburger" "a cheeseburger" --prior "$SCRATCH/sd21" \
    --device cuda --preset paper --out "$SCRATCH/edit" --quiet --set probe_steps=20 \
    --set probe_window=5 --set revise_steps=6 --set ipg_steps=4 --set step.turntable_frames=8
cp "$SCRATCH/edit/summary.json" "$OUT/edit_paper_summary.json" 2>/dev/null

step "invert --preset paper on toy-eg3d (W 300, W+ 1000, PTI 400) on CUDA"
timeout 150 "$PY" -m dreamlift invert --head 203 --yaw 25 --preset paper --device cuda \
    --out "$SCRATCH/invert" --quiet
cp "$SCRATCH/invert/summary.json" "$OUT/invert_paper_summary.json" 2>/dev/null

step "blend --preset paper on toy-eg3d (W 300, joint PTI 100, blend 200) on CUDA"
timeout 150 "$PY" -m dreamlift blend --head 203 --yaw -15 --reference-head 217 \
    --reference-yaw 25 --part hair --preset paper --device cuda --out "$SCRATCH/blend" --quiet
cp "$SCRATCH/blend/summary.json" "$OUT/blend_paper_summary.json" 2>/dev/null

step "face --preset paper on toy-eg3d + toy-sd-heads (W+ 1000, PTI 400) on CUDA"
timeout 200 "$PY" -m dreamlift face --head 203 --yaw 20 --prompt "a person with glasses" \
    --light left --preset paper --device cuda --out "$SCRATCH/face" --quiet
cp "$SCRATCH/face/summary.json" "$OUT/face_paper_summary.json" 2>/dev/null

step "handles --preset paper on toy-sd-depth on CUDA, the paper's passes and carried"
for variant in "paper" "carried --keep-background --carry-steps 38"; do
    set -- $variant
    name=$1
    shift
    timeout 90 "$PY" -m dreamlift handles --scene "a red cube next to a blue sphere" --object 0 \
        --translate -0.3 0 0 --preset paper --device cuda "$@" --out "$SCRATCH/handles_$name" --quiet >/dev/null
    cp "$SCRATCH/handles_$name/summary.json" "$OUT/handles_${name}_summary.json" 2>/dev/null
done

step "waiting for the gsplat build"
while [ ! -f "$SCRATCH/gsplat_build.rc" ]; do sleep 2; done
tail -5 "$SCRATCH/gsplat_build.log"
if [ "$(cat "$SCRATCH/gsplat_build.rc")" = 0 ]; then
    step "gsplat parity tests"
    timeout 40 "$PY" -m pytest -q -p no:cacheprovider tests/test_gaussians.py -k gsplat
    step "rasteriser parity and speed"
    timeout 50 "$PY" benchmarks/rasterize_cuda.py --out "$OUT/rasterize_cuda.json"
    step "split: paper preset through gsplat"
    timeout 70 "$PY" benchmarks/generate_cost.py --device cuda --dtype float16 --preset paper \
        --backend gsplat --fields gaussians --guidances ge3d sds --steps 4 --warmup 2 \
        --out "$OUT/cost_paper_fp16_gsplat.json"
    step "--batch 1 and 8 on CUDA: GE3D, the fast set's 8 captions, 200 steps, through gsplat"
    timeout 240 "$PY" benchmarks/batch.py --device cuda --guidances ge3d --sizes 1 8 \
        --steps 200 --out "$OUT/batch_cuda.json"
    step "the fast SDS run and the README main job on CUDA through gsplat; SDS again with the eager UNet"
    for run in "sds 0 a green cone" "sds 1 a green cone" "ge3d 0 a purple cylinder with an orange cone on top"; do
        set -- $run
        guidance=$1 eager=$2
        shift 2
        dir="$SCRATCH/fast_${guidance}_eager$eager"
        start=$(date +%s.%N)
        DREAMLIFT_EAGER_UNET=$eager timeout 120 "$PY" -m dreamlift generate "$*" --guidance "$guidance" \
            --device cuda --out "$dir" --quiet >/dev/null
        echo "$guidance eager=$eager wall $("$PY" -c 'import sys, time; print(round(time.time() - float(sys.argv[1]), 1))' "$start") s"
        cp "$dir/summary.json" "$OUT/fast_${guidance}_eager$eager.json" 2>/dev/null
    done
else
    step "gsplat did not build (rc $(cat "$SCRATCH/gsplat_build.rc")):"
    tail -30 "$SCRATCH/gsplat_build.log"
fi
step "done"
