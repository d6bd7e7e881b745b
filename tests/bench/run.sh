#!/usr/bin/env bash
# Side-by-side benchmark runner: leash (C++) vs std::thread vs Go.
#
#   tests/bench/run.sh BUILD_DIR
#   LEASH_BENCH_ONLY=http tests/bench/run.sh BUILD_DIR   # only scenarios matching a regex
#
# The headers' compile cost per translation unit is measured separately, by
# tests/bench/compile_cost.sh [CXX] (needs no build directory).
#
# Prerequisites (each optional; a missing one is reported and its rows skipped):
#   apt-get install -y golang-go nginx wrk
#
# Runs every C++ benchmark binary found in BUILD_DIR and, if Go is installed,
# the matching Go program from tests/bench/go/. With nginx and wrk installed,
# wrk's keep-alive GETs against the same nginx are the HTTP rows' ceiling. Every program prints lines of
# the form "BENCH <scenario> <impl> <metric>=<value> ...". They are collected in
# BUILD_DIR/bench-results.txt and summarised as one markdown table per scenario.
set -uo pipefail

# One row per scenario; adding a scenario is a one-line change here.
#   scenario  cpp_binary  go_file  primary_metric  compare
# primary_metric is a metric name or "a-b" (difference of two metrics);
# compare is "ratio" (other/leash, so >1 means leash is lower, i.e. better)
# or "side" (values listed side by side, no ratio). A scenario without a
# "leash" row compares against its first row whose name starts with "leash".
SCENARIOS=(
  "spawn_join      bench_spawn_join      spawn_join.go      ns_per_task,cpu_ns_per_task    ratio pin"
  "mass_cancel_sleep_10k bench_mass_cancel mass_cancel.go   ms                             ratio"
  "mass_cancel_recv_10k  -                 -                ms                             ratio"
  "mass_cancel_sleep_30k -                 -                ms                             ratio"
  "mass_cancel_recv_30k  -                 -                ms                             ratio"
  "deadline_scope  bench_deadline_scope  deadline_scope.go  ns_per_op                      ratio"
  "sleep_rss       bench_sleep_rss       sleep_rss.go       rss_after_3s_kb-rss_baseline_kb side pin"
  "sleep_rss_1m    -                     -                  rss_peak_kb,join_ms,rss_after_3s_kb-rss_baseline_kb ratio"
  "recv_rss_1m     -                     -                  rss_peak_kb,join_ms,rss_after_3s_kb-rss_baseline_kb ratio"
  "ticker          bench_ticker          ticker.go          p99_us                         ratio"
  "must_close      bench_must_close      -                  ns_per_op                      ratio"
  "must_close_fd   -                     -                  ns_per_op                      ratio"
  "http_keepalive  bench_http_keepalive  http_keepalive.go  req_per_s                      side"
  "http_keepalive_1mib -                    -                  req_per_s                      side"
  "io_idle_1k      bench_io_idle         io_idle.go         server_rss_kb,server_threads,open_ms,fresh_p50_us ratio"
  "io_idle_10k     -                     -                  server_rss_kb,server_threads,open_ms,fresh_p50_us ratio"
  "io_burst_2k     -                     -                  p50_us,p99_us                  ratio"
  "http_conns_idle_1k  bench_http_conns  -               server_rss_kb,server_threads,fresh_p50_us,fresh_p99_us ratio"
  "http_conns_idle_10k -                 -               server_rss_kb,server_threads,fresh_p50_us,fresh_p99_us,open_ms ratio"
  "http_conns_seq_10k  -                 -               total_ms                       ratio"
  "http_conns_burst_2k -                 -               p50_us,p99_us                  ratio"
  "http_conns_wrk_256c -                 -               req_per_s,server_threads       side"
  "http_conns_wrk_1000c -                -               req_per_s,server_threads       side"
  "http_conns_slowloris_2k -             -               fresh_p50_us,fresh_p99_us,close_max_ms,server_threads ratio"
  "chan_pingpong   bench_channels        channels.go        ns_per_op,cpu_ns_per_op        ratio pin"
  "chan_spsc       -                     -                  ns_per_op,cpu_ns_per_op        ratio"
  "chan_mpsc       -                     -                  ns_per_op,cpu_ns_per_op        ratio"
  "chan_mpmc_c0    -                     -                  ns_per_op,cpu_ns_per_op        ratio"
  "chan_mpmc_c1    -                     -                  ns_per_op,cpu_ns_per_op        ratio"
  "chan_mpmc_c1024 -                     -                  ns_per_op,cpu_ns_per_op        ratio"
  "chan_select2    -                     -                  ns_per_op,cpu_ns_per_op        ratio"
  "sem_uncontended bench_semaphore       semaphore.go       ns_per_op,cpu_ns_per_op        ratio"
  "sem_contended_8 -                     -                  ns_per_op,cpu_ns_per_op        ratio"
  "bcast_8         bench_broadcast       broadcast.go       ns_per_value,cpu_ns_per_value  ratio"
  "race2_both_ready    bench_race        race.go            ns_per_op,cpu_ns_per_op        ratio"
  "race2_loser_blocked -                 -                  ns_per_op,cpu_ns_per_op        ratio"
  "mem_roundtrip   bench_memory_http     memory_http.go     ns_per_op,cpu_ns_per_op        ratio pin"
  "mem_roundtrip_8 -                     -                  ns_per_op,cpu_ns_per_op        ratio"
)
# primary_metric may be a comma-separated list: one summary line each.
# A "-" binary or Go file: the scenario's lines come from the row above that
# runs it. "pin" in a sixth column: run that row's programs a second time
# pinned to one CPU (taskset -c 0, flag -pinned 1), so that a spin phase that
# burns a shared CPU shows up (scenario names get "_pinned"; bench_sleep_rss
# and sleep_rss.go then run only their 1M coroutine-task/goroutine rows).
# bench_http_conns is the client of both servers: its Go server
# (go/http_conns.go) is built here and passed in LEASH_BENCH_GO_HTTP_CONNS,
# hence no Go file in its rows.
# Ratios are other/leash; where a scenario has both a "leash" (thread tasks)
# and a "leash_coro" (coroutine tasks) row, a second line gives the Go rows
# over leash_coro.
TIMEOUT=300 # seconds, per program

if [[ $# -ne 1 || ! -d $1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
go_dir=$(cd "$(dirname "$0")/go" && pwd)
results=$build_dir/bench-results.txt
: >"$results"

# Debian's golang-go puts go on PATH; fall back to its real location.
GO=$(command -v go || true)
[[ -z $GO && -x /usr/lib/go/bin/go ]] && GO=/usr/lib/go/bin/go
go_tmp=$(mktemp -d)
trap 'rm -rf "$go_tmp"' EXIT
# The Go programs are standalone stdlib-only files with no go.mod; GOPATH mode
# keeps them independent of any go.mod that may appear above them. go needs a
# build cache directory, which it cannot derive when HOME is unset.
export GO111MODULE=off
[[ -z ${HOME:-} && -z ${GOCACHE:-} ]] && export GOCACHE=$go_tmp/cache

# The HTTP benchmarks' peer: nginx on loopback serving a 128-byte file, its
# address in LEASH_BENCH_NGINX (the programs print SKIP without it).
if command -v nginx >/dev/null 2>&1; then
  ngx=$go_tmp/nginx
  mkdir -p "$ngx/www" && chmod 755 "$go_tmp" "$ngx" "$ngx/www"
  head -c 127 /dev/zero | tr '\0' x >"$ngx/www/small.txt" && echo >>"$ngx/www/small.txt"
  head -c 1048576 /dev/urandom >"$ngx/www/big.bin"
  port=$((20000 + RANDOM % 30000))
  cat >"$ngx/nginx.conf" <<EOF_NGINX
worker_processes auto;
pid $ngx/nginx.pid;
error_log $ngx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $ngx/body;
  proxy_temp_path $ngx/proxy;
  fastcgi_temp_path $ngx/fastcgi;
  uwsgi_temp_path $ngx/uwsgi;
  scgi_temp_path $ngx/scgi;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$port; root $ngx/www; }
}
EOF_NGINX
  if nginx -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf" 2>/dev/null; then
    export LEASH_BENCH_NGINX=127.0.0.1:$port
    trap 'kill -QUIT "$(cat "$ngx/nginx.pid" 2>/dev/null)" 2>/dev/null; sleep 0.2; rm -rf "$go_tmp"' EXIT
    sleep 0.2
  else
    echo "NOTE: nginx did not start; HTTP benchmarks skipped" >&2
  fi
else
  echo "nginx not installed: HTTP benchmarks skipped"
fi

# wrk_rows SCENARIO PATH: wrk's req/s for a keep-alive GET of PATH from the
# bench nginx, with 1 and 8 connections (median of 3 runs of 1 s, like
# bench_http_keepalive), as "BENCH SCENARIO wrk_<N>c req_per_s=..." lines.
wrk_rows() {
  local scenario=$1 path=$2 conns threads i out rps
  [[ -z ${LEASH_BENCH_NGINX:-} ]] && return
  if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk not installed: no ceiling row for $scenario (apt-get install wrk)"
    return
  fi
  for conns in 1 8; do
    threads=$((conns < $(nproc) ? conns : $(nproc)))
    rps=()
    for i in 1 2 3; do
      out=$(timeout "$TIMEOUT" wrk -t"$threads" -c"$conns" -d1s "http://$LEASH_BENCH_NGINX$path" 2>&1)
      rps+=("$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")")
    done
    rps=($(printf '%s\n' "${rps[@]}" | grep . | sort -n))
    if ((${#rps[@]} == 0)); then
      echo "NOTE: wrk -c$conns $path printed no Requests/sec" >&2
      continue
    fi
    echo "BENCH $scenario wrk_${conns}c req_per_s=${rps[$((${#rps[@]} / 2))]} threads=$threads" |
      tee -a "$results"
  done
}

# run NAME CMD...: run under the timeout, echo its output, keep BENCH lines.
run() {
  local name=$1 out rc
  shift
  echo "--- $name" >&2
  out=$(timeout "$TIMEOUT" "$@")
  rc=$?
  [[ -n $out ]] && printf '%s\n' "$out"
  if ((rc == 124)); then
    echo "NOTE: $name timed out after ${TIMEOUT}s" >&2
  elif ((rc != 0)); then
    echo "NOTE: $name exited with status $rc" >&2
  fi
  grep '^BENCH ' <<<"$out" >>"$results"
}

[[ -z $GO ]] && echo "go not installed: apt-get install golang-go to compare"
for row in "${SCENARIOS[@]}"; do
  read -r scenario cpp go_file _ _ pin <<<"$row"
  [[ -n ${LEASH_BENCH_ONLY:-} && ! $scenario =~ $LEASH_BENCH_ONLY ]] && continue
  # A top-level build puts the benchmarks in tests/bench/; accept both.
  [[ -x $build_dir/tests/bench/$cpp ]] && cpp=tests/bench/$cpp
  case $scenario in  # Go servers that a C++ benchmark drives itself
    http_conns_idle_1k)
      unset LEASH_BENCH_GO_HTTP_CONNS
      if [[ -n $GO ]] && timeout "$TIMEOUT" "$GO" build -o "$go_tmp/http_conns" "$go_dir/http_conns.go"; then
        export LEASH_BENCH_GO_HTTP_CONNS=$go_tmp/http_conns
      elif [[ -n $GO ]]; then
        echo "NOTE: go build http_conns.go failed" >&2
      fi
      ;;
  esac
  if [[ $cpp == - ]]; then
    :
  elif [[ -x $build_dir/$cpp ]]; then
    run "$cpp" "$build_dir/$cpp"
    [[ $pin == pin ]] && run "$cpp (pinned)" taskset -c 0 "$build_dir/$cpp" -pinned 1
  else
    echo "SKIP: $build_dir/$cpp not built" >&2
  fi
  if [[ -n $GO && $go_file != - ]]; then  # "-": no Go counterpart
    # Build, then run the binary (not "go run"): compile time stays out of the
    # program's time budget and the timeout signals the benchmark itself
    # rather than the go tool wrapping it.
    bin=$go_tmp/${go_file%.go}
    if timeout "$TIMEOUT" "$GO" build -o "$bin" "$go_dir/$go_file"; then
      run "go/$go_file" "$bin"
      [[ $pin == pin ]] && run "go/$go_file (pinned)" taskset -c 0 "$bin" -pinned 1
    else
      echo "NOTE: go build $go_file failed" >&2
    fi
  fi
  case $scenario in  # wrk: the ceiling beside leash and Go
    http_keepalive) wrk_rows http_keepalive /small.txt ;;
    http_keepalive_1mib) wrk_rows http_keepalive_1mib /big.bin ;;
  esac
done

echo
echo "Results: $results"
# Summary: generic over whatever scenarios appear in the results; the primary
# metric / comparison mode come from SCENARIOS (none -> table only).
printf '%s\n' "${SCENARIOS[@]}" | awk '
  FNR == NR { primary[$1] = $4; mode[$1] = $5; next }
  $1 == "BENCH" {
    s = $2; impl = $3
    if (!(s in seen)) { seen[s] = 1; order[++ns] = s }
    if (!((s, impl) in has)) { has[s, impl] = 1; impls[s, ++ni[s]] = impl }
    for (f = 4; f <= NF; f++) {
      eq = index($f, "="); if (!eq) continue
      m = substr($f, 1, eq - 1); v = substr($f, eq + 1)
      if (!((s, impl, m) in val)) rows[s, ++nr[s]] = impl SUBSEP m
      val[s, impl, m] = v
    }
  }
  # value of a metric name or "a-b" difference; "" when missing
  function metric(s, impl, expr,   ab) {
    if (split(expr, ab, "-") == 2) {
      if (!((s, impl, ab[1]) in val) || !((s, impl, ab[2]) in val)) return ""
      return val[s, impl, ab[1]] - val[s, impl, ab[2]]
    }
    return ((s, impl, expr) in val) ? val[s, impl, expr] : ""
  }
  END {
    for (i = 1; i <= ns; i++) {
      s = order[i]
      printf "\n### %s\n\n| impl | metric | value |\n|---|---|---|\n", s
      for (r = 1; r <= nr[s]; r++) {
        split(rows[s, r], k, SUBSEP)
        printf "| %s | %s | %s |\n", k[1], k[2], val[s, k[1], k[2]]
      }
      base_s = s; sub(/_pinned$/, "", base_s)  # a pinned run compares like its unpinned row
      if (!(s in primary) && (base_s in primary)) { primary[s] = primary[base_s]; mode[s] = mode[base_s] }
      if (!(s in primary)) continue
      base_impl = ""; coro_impl = ""; first_leash = ""
      for (j = 1; j <= ni[s]; j++) {
        o = impls[s, j]
        if (o == "leash") base_impl = o
        if (o == "leash_coro") coro_impl = o
        if (first_leash == "" && o ~ /^leash/) first_leash = o
      }
      if (base_impl == "") base_impl = first_leash
      np = split(primary[s], ps, ",")
      printf "\n"
      for (q = 1; q <= np; q++) {
        p = ps[q]
        if (mode[s] == "ratio") {
          summary_ratio(s, p, base_impl, "")
          if (coro_impl != "" && coro_impl != base_impl) summary_ratio(s, p, coro_impl, "^go")
        } else {
          line = ""
          for (j = 1; j <= ni[s]; j++) {
            o = impls[s, j]; v = metric(s, o, p)
            if (v != "") line = line sprintf("%s=%s | ", o, v)
          }
          printf "%s: %s\n", p, substr(line, 1, length(line) - 3)
        }
      }
    }
  }
  # One line: metric p of every other impl (those matching `only`, if set)
  # over that of base_impl.
  function summary_ratio(s, p, base_impl, only,   base, line, j, o, v) {
    base = base_impl == "" ? "" : metric(s, base_impl, p)
    if (base == "") { printf "%s: no leash result, no ratio\n", p; return }
    line = ""
    for (j = 1; j <= ni[s]; j++) {
      o = impls[s, j]; v = metric(s, o, p)
      if (o == base_impl || v == "" || (only != "" && o !~ only)) continue
      line = line sprintf("%s %s, ", o, base > 0 ? sprintf("%.2fx", v / base) : "n/a")
    }
    if (line == "") line = "no other impl, "
    printf "ratio other/%s on %s (>1 = %s better): %s\n", base_impl, p, base_impl,
      substr(line, 1, length(line) - 2)
  }' - "$results"
