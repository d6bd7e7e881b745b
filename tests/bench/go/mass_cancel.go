// Go baseline for leash's bench_mass_cancel: N goroutines blocked, one cancel
// of their context, then WaitGroup.Wait(); prints the median ms from cancel()
// until every goroutine returned.
//
//	sleep: each goroutine selects on ctx.Done() and a 1 h timer
//	recv:  each goroutine selects on ctx.Done() and its own unbuffered channel
//
//	go run mass_cancel.go [-n 10000] [-runs 3]   (default: 10000, then 30000)
package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func cpuSeconds() float64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return float64(u.Utime.Sec+u.Stime.Sec) + float64(u.Utime.Usec+u.Stime.Usec)/1e6
}

// cancelSeconds starts n goroutines that block in block(ctx, i), waits until
// all of them have entered it, then times cancel() + Wait().
func cancelSeconds(n int, block func(ctx context.Context, i int)) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var entered int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			atomic.AddInt64(&entered, 1)
			block(ctx, i)
		}(i)
	}
	for atomic.LoadInt64(&entered) < int64(n) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the last ones reach their select
	t0 := time.Now()
	cancel()
	wg.Wait()
	return time.Since(t0).Seconds()
}

func report(scenario string, n, runs int, block func(ctx context.Context, i int)) {
	var took []float64
	cpu := 0.0
	for r := 0; r < runs; r++ {
		c0 := cpuSeconds()
		took = append(took, cancelSeconds(n, block))
		cpu += cpuSeconds() - c0
	}
	sort.Float64s(took)
	fmt.Printf("BENCH %s go ms=%.1f cpu_ms_per_run=%.1f tasks=%d runs=%d\n",
		scenario, took[len(took)/2]*1e3, cpu*1e3/float64(runs), n, runs)
}

func runSize(n, runs int) {
	report(fmt.Sprintf("mass_cancel_sleep_%dk", n/1000), n, runs, func(ctx context.Context, _ int) {
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	})
	channels := make([]chan int, n)
	for i := range channels {
		channels[i] = make(chan int)
	}
	report(fmt.Sprintf("mass_cancel_recv_%dk", n/1000), n, runs, func(ctx context.Context, i int) {
		select {
		case <-ctx.Done():
		case <-channels[i]:
		}
	})
}

func main() {
	n := flag.Int("n", 0, "tasks (0: 10000, then 30000)")
	runs := flag.Int("runs", 3, "runs")
	flag.Int("pinned", 0, "ignored (run.sh passes it when pinning)")
	flag.Parse()
	if *n > 0 {
		runSize(*n, *runs)
		return
	}
	runSize(10000, *runs)
	runSize(30000, *runs)
}
