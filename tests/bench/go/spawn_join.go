// Go baseline for leash's bench_spawn_join: spawn N trivial goroutines and join
// them, repeated -runs times; prints the median wall and the mean CPU
// (user+sys of the process) ns per task.
//
//	go run spawn_join.go [-n 100000] [-runs 5] [-pinned 1]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"
)

var errNever = errors.New("never returned")

// task is the trivial body. It returns an error (always nil) so both variants
// do identical work and the errgroup variant has something to capture.
func task(i int) error {
	if i < 0 {
		return errNever
	}
	return nil
}

// waitGroup is the idiomatic "wg.Add(1); go func() { defer wg.Done() }" pattern.
func waitGroup(n int) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_ = task(i)
		}(i)
	}
	wg.Wait()
}

// group mirrors golang.org/x/sync/errgroup.Group (not available offline):
// a WaitGroup plus first-error capture through sync.Once.
type group struct {
	wg      sync.WaitGroup
	errOnce sync.Once
	err     error
}

func (g *group) Go(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.errOnce.Do(func() { g.err = err })
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	return g.err
}

func errGroup(n int) {
	var g group
	for i := 0; i < n; i++ {
		i := i // per-iteration copy (Go < 1.22 shares the loop variable)
		g.Go(func() error { return task(i) })
	}
	if err := g.Wait(); err != nil {
		panic(err)
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}

func cpuSeconds() float64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(u.Utime) + tv(u.Stime)
}

// measure returns the median wall and the mean CPU ns per task of fn(n) over
// runs repetitions. One untimed warm-up run first lets the runtime grow its
// heap and goroutine free lists, so the first timed run is not an outlier.
func measure(fn func(int), n, runs int) (float64, float64) {
	fn(n)
	perTask := make([]float64, runs)
	c0 := cpuSeconds()
	for r := range perTask {
		start := time.Now()
		fn(n)
		perTask[r] = float64(time.Since(start).Nanoseconds()) / float64(n)
	}
	return median(perTask), (cpuSeconds() - c0) * 1e9 / float64(n*runs)
}

func main() {
	n := flag.Int("n", 100000, "goroutines spawned and joined per run")
	runs := flag.Int("runs", 5, "timed repetitions (median reported)")
	pinned := flag.Int("pinned", 0, "tag the scenario as pinned (run.sh runs it under taskset -c 0)")
	flag.Parse()
	scenario := "spawn_join"
	if *pinned != 0 {
		scenario += "_pinned"
	}
	if *n < 1 || *runs < 1 {
		fmt.Fprintln(os.Stderr, "-n and -runs must be >= 1")
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "# spawn_join: n=%d runs=%d GOMAXPROCS=%d %s\n",
		*n, *runs, runtime.GOMAXPROCS(0), runtime.Version())

	wall, cpu := measure(waitGroup, *n, *runs)
	fmt.Printf("BENCH %s go_waitgroup ns_per_task=%.1f cpu_ns_per_task=%.1f runs=%d\n",
		scenario, wall, cpu, *runs)
	wall, cpu = measure(errGroup, *n, *runs)
	fmt.Printf("BENCH %s go_errgroup ns_per_task=%.1f cpu_ns_per_task=%.1f runs=%d\n",
		scenario, wall, cpu, *runs)
}
