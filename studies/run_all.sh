#!/usr/bin/env bash
# Run (or resume) every paper study in order, then write each study's report.
# Usage: studies/run_all.sh [STUDY_NAME ...]   (default: all, cheapest first)
#        studies/run_all.sh --report-only [STUDY_NAME ...]   (`make results`: no training; every study with a
#          store in $STORAGE (default: all of them) gets its report, figures and docs/RESULTS.md section again,
#          then the claims table)
# Interrupt it at any time: the next call resumes each study where it stopped (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
STORAGE=${STORAGE:-studies_out}
# the studies read by `anpyc-sweep analyze` (Section V: Figs. 9, 10, 7a), in both modes below
ANALYSED=" section5_analyses fig10_drift "
analyze_if_needed() { case $ANALYSED in *" $1 "*) "$BIN/anpyc-sweep" analyze "studies/$1.yaml" --storage "$STORAGE" ;; esac; }
if [ "${1:-}" = --report-only ]; then
  shift
  names=("$@")
  if [ ${#names[@]} -eq 0 ]; then
    for yaml in studies/*.yaml; do names+=("$(basename "$yaml" .yaml)"); done
  fi
  done_any=0
  for name in "${names[@]}"; do
    [ -f "studies/$name.yaml" ] || { echo "run_all: no study file studies/$name.yaml" >&2; exit 2; }
    if [ ! -f "$STORAGE/$name/study.yaml" ]; then
      echo "run_all: $name: no store in $STORAGE (launch it first); its section is left as it was" >&2
      continue
    fi
    "$BIN/anpyc-sweep" report "studies/$name.yaml" --storage "$STORAGE"
    analyze_if_needed "$name"
    "$BIN/python" bench/paper_results.py "$name" --storage "$STORAGE"
    done_any=1
  done
  "$BIN/python" bench/claims_table.py
  [ $done_any = 1 ] || echo "run_all: no study of this list has a store in $STORAGE" >&2
  exit 0
fi
studies=("$@")
[ ${#studies[@]} -gt 0 ] || studies=(table1_split_lambda table1_split_update table1_split fig8b_lambda fig8c_beta
  section5_analyses table2_permuted
  fig8a_pruning fig7_ablation_width fig7_ablation_tasks fig8a_pruning_update fig7_ablation_lambda table2_permuted_lambda
  fig7_ablation_width_tuned fig7_ablation_tasks_tuned table2_reference table2_reference_rank)
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
  analyze_if_needed "$name"
  echo "run_all: $name finished this call in $(( $(date +%s) - start )) s" >&2
done
