#!/usr/bin/env bash
# Run (or resume) every paper study in order, then write each study's report.
# Usage: studies/run_all.sh [STUDY_NAME ...]   (default: all, cheapest first)
# Interrupt it at any time: the next call resumes each study where it stopped (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
STORAGE=${STORAGE:-studies_out}
studies=("$@")
[ ${#studies[@]} -gt 0 ] || studies=(table1_split_lambda table1_split_update table1_split fig8b_lambda fig8c_beta
  section5_analyses table2_permuted
  fig8a_pruning fig7_ablation_width fig7_ablation_tasks fig8a_pruning_update fig7_ablation_lambda table2_permuted_lambda
  fig7_ablation_width_tuned fig7_ablation_tasks_tuned)
for name in "${studies[@]}"; do
  yaml="studies/$name.yaml"
  [ -f "$yaml" ] || { echo "run_all: no study file $yaml" >&2; exit 2; }
  start=$(date +%s)
  if [ -f "$STORAGE/$name/study.yaml" ]; then
    "$BIN/anpyc-sweep" launch "$yaml" --storage "$STORAGE" --resume
  else
    "$BIN/anpyc-sweep" launch "$yaml" --storage "$STORAGE"
  fi
  "$BIN/anpyc-sweep" report "$yaml" --storage "$STORAGE"
  if [ "$name" = section5_analyses ]; then "$BIN/anpyc-sweep" analyze "$yaml" --storage "$STORAGE"; fi
  echo "run_all: $name finished this call in $(( $(date +%s) - start )) s" >&2
done
