#!/usr/bin/env bash
# Compile cost of leash's headers, as a user's translation unit pays it.
#
#   tests/bench/compile_cost.sh [CXX]          # CXX defaults to $CXX, then g++
#   LEASH_COMPILE_RUNS=9 tests/bench/compile_cost.sh clang++
#
# Each header is compiled alone in a one-line TU (-std=c++20 -O0 -c) several
# times; the median user+sys CPU seconds and the median peak RSS are reported
# beside the ratio to a "std peer" TU measured in the same run: the standard
# headers a thread-based program would include anyway. text_b is the code the
# bare include emits into the object (size's text column): a header-only
# library should emit next to none until something is used. Lines have the form
#   BENCH compile_cost <header> cpu_s=... rss_kb=... text_b=... ratio=...
# followed by a markdown table. Too slow for ctest; run it by hand.
set -euo pipefail

CXX=${1:-${CXX:-g++}}
RUNS=${LEASH_COMPILE_RUNS:-5} # odd, so the median is one measured run
root=$(cd "$(dirname "$0")/../.." && pwd)
inc=$root/include
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ ! -x /usr/bin/time ]]; then
  echo "compile_cost.sh: needs GNU time at /usr/bin/time (apt-get install time)" >&2
  exit 2
fi

peer='#include <thread>
#include <future>
#include <condition_variable>
#include <stop_token>
#include <mutex>
#include <optional>'

# name<TAB>TU text, in report order: the peer first (the ratios' base).
tus=("std-peer	$peer" "leash.hpp	#include <leash.hpp>")
for h in "$inc"/leash/*.hpp; do
  name=leash/$(basename "$h")
  [[ $name == leash/http.hpp ]] && continue
  tus+=("$name	#include <$name>")
done
[[ $(uname -s) == Linux ]] && tus+=("leash/http.hpp	#include <leash/http.hpp>")

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# measure NAME TEXT: print "cpu_s rss_kb text_b": medians over RUNS compiles.
measure() {
  local src=$tmp/tu.cpp i cpu=() rss=()
  printf '%s\n' "$2" >"$src"
  for ((i = 0; i < RUNS; i++)); do
    if ! /usr/bin/time -f '%U %S %M' -o "$tmp/t" \
      "$CXX" -std=c++20 -O0 -I"$inc" -c "$src" -o "$tmp/tu.o"; then
      echo "compile_cost.sh: $1 does not compile" >&2
      return 1
    fi
    read -r u s m <"$tmp/t"
    cpu+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
    rss+=("$m")
  done
  echo "$(printf '%s\n' "${cpu[@]}" | median) $(printf '%s\n' "${rss[@]}" | median)" \
    "$(size "$tmp/tu.o" | awk 'NR == 2 { print $1 }')"
}

echo "compiler: $("$CXX" --version | head -n 1), runs per TU: $RUNS" >&2
table="| TU | cpu_s | peak RSS (MiB) | code emitted (bytes) | ratio to std-peer |
|---|---|---|---|---|"
base=
for row in "${tus[@]}"; do
  name=${row%%	*}
  read -r cpu rss text < <(measure "$name" "${row#*	}")
  [[ -z $base ]] && base=$cpu
  ratio=$(awk -v c="$cpu" -v b="$base" 'BEGIN { printf "%.2f", (b > 0 ? c / b : 0) }')
  echo "BENCH compile_cost $name cpu_s=$cpu rss_kb=$rss text_b=$text ratio=$ratio"
  table+=$'\n'"| \`$name\` | $cpu | $(awk -v m="$rss" 'BEGIN { printf "%.0f", m / 1024 }') | $text | ${ratio}x |"
done
echo
printf '%s\n' "$table"
