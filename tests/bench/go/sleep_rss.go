// Go baseline for leash's bench_sleep_rss: memory cost of many concurrently
// sleeping tasks, and how much of it is given back afterwards.
//
//	go run sleep_rss.go [-g 10000] [-sleep 1s] [-settle 3s]
//
// All figures are KiB read from /proc/self/status (Linux only).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
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

func main() {
	g := flag.Int("g", 10000, "goroutines that sleep concurrently")
	sleep := flag.Duration("sleep", time.Second, "how long each goroutine sleeps")
	settle := flag.Duration("settle", 3*time.Second, "idle time before the final readings")
	flag.Parse()
	fmt.Fprintf(os.Stderr, "# sleep_rss: g=%d sleep=%v settle=%v GOMAXPROCS=%d %s\n",
		*g, *sleep, *settle, runtime.GOMAXPROCS(0), runtime.Version())

	baseline := procStatusKB("VmRSS")

	var wg sync.WaitGroup
	for i := 0; i < *g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(*sleep)
		}()
	}
	wg.Wait()
	peak := procStatusKB("VmHWM") // high-water mark covers the whole burst
	afterBurst := procStatusKB("VmRSS")

	// Idle, then collect: what a long-running server keeps after a burst.
	// Go's background scavenger returns freed pages to the OS only gradually.
	time.Sleep(*settle)
	runtime.GC()
	after3s := procStatusKB("VmRSS")
	// FreeOSMemory forces a GC and returns as much memory as possible at once:
	// the best case Go can reach, reported separately.
	debug.FreeOSMemory()
	after3sFree := procStatusKB("VmRSS")

	fmt.Printf("BENCH sleep_rss go rss_baseline_kb=%d rss_peak_kb=%d rss_after_burst_kb=%d rss_after_3s_kb=%d rss_after_3s_freeos_kb=%d\n",
		baseline, peak, afterBurst, after3s, after3sFree)
}
