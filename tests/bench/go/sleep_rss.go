// Go baseline for leash's bench_sleep_rss: memory cost of many concurrently
// waiting goroutines, how much of it is given back afterwards, and how long
// until every one of them was joined.
//
//	sleep_rss     -g goroutines (10000) in time.Sleep(-sleep)
//	sleep_rss_1m  -m goroutines (1000000) in time.Sleep(-sleep); join_ms runs
//	              from the first go statement until wg.Wait() returned
//	recv_rss_1m   -m goroutines (1000000) in <-ch on one unbuffered channel;
//	              once all of them wait, the channel is closed; join_ms runs
//	              from close(ch) until wg.Wait() returned
//
// Each row runs in its own process (this program started again with -mode),
// so one row's peak cannot hide another's. With -pinned 1 (run.sh runs the
// program under taskset -c 0 for that) only the 1M rows run, their scenario
// names tagged "_pinned".
//
//	go run sleep_rss.go [-g 10000] [-m 1000000] [-sleep 1s] [-settle 3s] [-pinned 1] [-mode sleep|sleep_1m|recv_1m]
//
// All memory figures are KiB read from /proc/self/status (Linux only).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// procStatusKB returns the value of a "Key:   1234 kB" line of /proc/self/status.
func procStatusKB(key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sleep_rss:", err)
		os.Exit(1)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// strings.CutPrefix would be neater but needs Go 1.20; Debian 12 has 1.19.
		if line := sc.Text(); strings.HasPrefix(line, key+":") {
			fields := strings.Fields(line[len(key)+1:])
			if len(fields) > 0 {
				if v, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					return v
				}
			}
		}
	}
	fmt.Fprintf(os.Stderr, "sleep_rss: %s not found in /proc/self/status\n", key)
	os.Exit(1)
	return 0
}

func cpuSeconds() float64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(u.Utime) + tv(u.Stime)
}

func msSince(t0 time.Time) float64 { return float64(time.Since(t0).Nanoseconds()) / 1e6 }

// burst is what one row measured before the settle time.
type burst struct {
	baseline, peak, afterBurst int64
	spawnMs, joinMs, cpuMs     float64
}

// sleepers runs n goroutines that each sleep d; joinMs from the first go
// statement until all returned.
func sleepers(n int, d time.Duration) burst {
	b := burst{baseline: procStatusKB("VmRSS")}
	c0 := cpuSeconds()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(d)
		}()
	}
	b.spawnMs = msSince(t0)
	wg.Wait()
	b.joinMs = msSince(t0)
	b.cpuMs = (cpuSeconds() - c0) * 1e3
	b.peak = procStatusKB("VmHWM") // high-water mark covers the whole burst
	b.afterBurst = procStatusKB("VmRSS")
	return b
}

// receivers runs n goroutines blocked in <-ch on one unbuffered channel,
// then closes it; joinMs from the close until all returned.
func receivers(n int) burst {
	b := burst{baseline: procStatusKB("VmRSS")}
	c0 := cpuSeconds()
	ch := make(chan int)
	var wg sync.WaitGroup
	var entered int64
	t0 := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			atomic.AddInt64(&entered, 1)
			<-ch
		}()
	}
	b.spawnMs = msSince(t0)
	for atomic.LoadInt64(&entered) < int64(n) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the last ones reach <-ch
	t1 := time.Now()
	close(ch)
	wg.Wait()
	b.joinMs = msSince(t1)
	b.cpuMs = (cpuSeconds() - c0) * 1e3
	b.peak = procStatusKB("VmHWM")
	b.afterBurst = procStatusKB("VmRSS")
	return b
}

// report idles for settle, then prints the row.
func report(scenario string, b burst, n int, settle time.Duration) {
	// Idle, then collect: what a long-running server keeps after a burst.
	// Go's background scavenger returns freed pages to the OS only gradually.
	time.Sleep(settle)
	runtime.GC()
	after3s := procStatusKB("VmRSS")
	// FreeOSMemory forces a GC and returns as much memory as possible at once:
	// the best case Go can reach, reported separately.
	debug.FreeOSMemory()
	after3sFree := procStatusKB("VmRSS")
	fmt.Printf("BENCH %s go rss_baseline_kb=%d rss_peak_kb=%d rss_after_burst_kb=%d rss_after_3s_kb=%d rss_after_3s_freeos_kb=%d spawn_ms=%.1f join_ms=%.1f cpu_ms=%.1f tasks=%d\n",
		scenario, b.baseline, b.peak, b.afterBurst, after3s, after3sFree, b.spawnMs, b.joinMs, b.cpuMs, n)
}

func main() {
	g := flag.Int("g", 10000, "goroutines of the sleep_rss row")
	m := flag.Int("m", 1000000, "goroutines of the sleep_rss_1m and recv_rss_1m rows")
	sleep := flag.Duration("sleep", time.Second, "how long each sleeping goroutine sleeps")
	settle := flag.Duration("settle", 3*time.Second, "idle time before the final readings")
	pinned := flag.Int("pinned", 0, "only the 1M rows, tagged _pinned")
	mode := flag.String("mode", "", "run only this row: sleep, sleep_1m or recv_1m")
	flag.Parse()
	tag := ""
	if *pinned != 0 {
		tag = "_pinned"
	}
	switch *mode {
	case "":
		modes := []string{"sleep", "sleep_1m", "recv_1m"}
		if *pinned != 0 {
			modes = modes[1:]
		}
		failed := false
		for _, md := range modes {
			cmd := exec.Command(os.Args[0], append(os.Args[1:], "-mode", md)...)
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "sleep_rss:", md, err)
				failed = true
			}
		}
		if failed {
			os.Exit(1)
		}
		return
	case "sleep":
		fmt.Fprintf(os.Stderr, "# sleep_rss: g=%d sleep=%v settle=%v GOMAXPROCS=%d %s\n",
			*g, *sleep, *settle, runtime.GOMAXPROCS(0), runtime.Version())
		report("sleep_rss"+tag, sleepers(*g, *sleep), *g, *settle)
	case "sleep_1m":
		report("sleep_rss_1m"+tag, sleepers(*m, *sleep), *m, *settle)
	case "recv_1m":
		report("recv_rss_1m"+tag, receivers(*m), *m, *settle)
	default:
		fmt.Fprintln(os.Stderr, "sleep_rss: unknown -mode", *mode)
		os.Exit(2)
	}
}
