#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, AddressSanitizer and UBSan in the sanitized
# build that scripts/sanitize.sh uses, ${GPEDE_ASAN_BUILD_DIR:-build-asan}
# (scripts/lib/sanitized_build.sh), and runs each for a while (idempotent: installs and rebuilds
# only what is missing).
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--seed S] [target ...]
#
# targets: mille_reader, steering, solve (or their executable names fuzz_*); default all three.
# --seconds N   fuzzing time per target (default 60)
# --jobs J      processes at a time, for the build and for the fuzzing: J targets run side by side
#               (default: ${GPEDE_JOBS:-number of cores})
# --seed S      libFuzzer's random seed (default: a new one per run)
#
# Each target fuzzes a working corpus in BUILD/fuzz/<target>/corpus, seeded from
# tests/fuzz/corpus (the source tree is never written); what it finds (crash-*, timeout-*, oom-*,
# leak-*) lands in BUILD/fuzz/<target>/artifacts and its output in BUILD/fuzz/<target>/fuzz.log.
# The exit status is 1 if any target found something; the artifact paths are printed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

seconds=60
seed=""
jobs="${GPEDE_JOBS:-$(nproc)}"
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    --jobs=*) jobs="${1#*=}"; shift ;;
    --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
    --seed=*) seed="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) targets+=("fuzz_${1#fuzz_}"); shift ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz: --seconds needs a positive number" >&2; exit 2; }
[[ "$jobs" =~ ^[0-9]+$ && "$jobs" -gt 0 ]] || { echo "fuzz: --jobs needs a positive number" >&2; exit 2; }
[[ -z "$seed" || "$seed" =~ ^[0-9]+$ ]] || { echo "fuzz: --seed needs a number" >&2; exit 2; }
((${#targets[@]})) || targets=(fuzz_mille_reader fuzz_steering fuzz_solve)

# Per target: the seed folder under tests/fuzz/corpus, -max_len, and extra libFuzzer options.
declare -A corpus_of=([fuzz_mille_reader]=mille [fuzz_steering]=steering [fuzz_solve]=solve)
declare -A max_len_of=([fuzz_mille_reader]=8192 [fuzz_steering]=4096 [fuzz_solve]=4096)
declare -A extra_of=([fuzz_mille_reader]="" [fuzz_steering]="-dict=$root/tests/fuzz/steering.dict" [fuzz_solve]="")
for t in "${targets[@]}"; do
  [[ -n "${corpus_of[$t]:-}" ]] || { echo "fuzz: unknown target ${t#fuzz_} (mille_reader, steering, solve)" >&2; exit 2; }
done

# ---- tools and build: the sanitized build that scripts/sanitize.sh also uses -------------------
# shellcheck source=lib/sanitized_build.sh
source "$root/scripts/lib/sanitized_build.sh"
build_start=$SECONDS
sanitized_build_configure fuzz
build="$sanitized_build"
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "$t"); done
cmake --build "$build" -j "$jobs" "${build_targets[@]}"
echo "fuzz: built in $((SECONDS - build_start)) s"

# ---- fuzz --------------------------------------------------------------------------------------
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# One thread per execution: OpenBLAS would otherwise start a pool of its own.
export OPENBLAS_NUM_THREADS=1

# Runs target $1 for $seconds; its outcome goes to BUILD/fuzz/<target>/{fuzz.log,seconds}.
run_target() {
  local t="$1"
  local work="$build/fuzz/$t"
  mkdir -p "$work/corpus" "$work/artifacts" "$work/cwd" "$work/tmp"
  # The working corpus keeps what earlier runs found; the seeds are added where missing.
  cp -n "$root/tests/fuzz/corpus/${corpus_of[$t]}/"* "$work/corpus/"
  touch "$work/started"
  # First the inputs of past findings (tests/fuzz/regressions/<target>/), each once.
  local regressions="$root/tests/fuzz/regressions/$t"
  rm -f "$work/regressions_failed"
  if compgen -G "$regressions/*" >/dev/null; then
    (cd "$work/cwd" && TMPDIR="$work/tmp" "$build/tests/fuzz/$t" "$regressions"/*) >"$work/regressions.log" 2>&1 ||
      touch "$work/regressions_failed"
  fi
  local start=$SECONDS
  # In an empty working directory: the steering parser also looks for files there.
  # shellcheck disable=SC2086
  (cd "$work/cwd" && TMPDIR="$work/tmp" "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 \
     -rss_limit_mb=2048 -max_len="${max_len_of[$t]}" -print_final_stats=1 \
     -artifact_prefix="$work/artifacts/" ${seed:+-seed=$seed} ${extra_of[$t]} "$work/corpus") >"$work/fuzz.log" 2>&1 || true
  echo $((SECONDS - start)) >"$work/seconds"
}

echo "fuzz: ${targets[*]} for $seconds s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
wait

# ---- report ------------------------------------------------------------------------------------
status=0
printf '\n%-18s %12s %8s %9s %8s  %s\n' target executions seconds "execs/s" "new" result
for t in "${targets[@]}"; do
  work="$build/fuzz/$t"
  final_stat() { sed -n "s/^stat::$1: *//p" "$work/fuzz.log" | tail -1; }
  execs="$(final_stat number_of_executed_units)"
  secs="$(cat "$work/seconds")"
  rate="$(final_stat average_exec_per_sec)"
  found=()
  while IFS= read -r f; do found+=("$f"); done < <(find "$work/artifacts" -type f -newer "$work/started" \
    \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)
  result=ok
  if [[ -e "$work/regressions_failed" ]]; then
    result="FAILED on an input of tests/fuzz/regressions/$t (see $work/regressions.log)"
    status=1
  elif ((${#found[@]})); then
    result="FOUND ${#found[@]}"
    status=1
  elif [[ -z "$execs" ]]; then
    result="FAILED (no final stats; see $work/fuzz.log)"
    status=1
  fi
  printf '%-18s %12s %8s %9s %8s  %s\n' "${t#fuzz_}" "${execs:-?}" "$secs" "${rate:-?}" \
    "$(final_stat new_units_added)" "$result"
  for f in "${found[@]}"; do echo "    $f  (reproduce: $build/tests/fuzz/$t $f; log: $work/fuzz.log)"; done
done
exit $status
