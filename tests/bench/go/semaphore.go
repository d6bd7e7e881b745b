// Go baseline for leash's bench_semaphore: a semaphore as a buffered channel
// of capacity N (send to acquire, receive to release), the stdlib-only form
// of golang.org/x/sync/semaphore. Goroutines are warmed before the clock
// starts; prints the median wall and CPU (user+sys of the process) ns per
// acquire + release pair.
//
//	go run semaphore.go [-n 400000] [-runs 5]
package main

import (
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	permits        = 4    // fewer than the contended goroutines: they wait for each other
	contendedTasks = 8    // the "8-way" of the scenario's name
	warmPairs      = 1000 // per goroutine, before the clock starts
)

func cpuSeconds() float64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(u.Utime) + tv(u.Stime)
}

func median(v []float64) float64 {
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// timed runs `tasks` goroutines of pairs(sem, k): warm-up first, then the
// clock runs from the start signal until all returned.
func timed(tasks, perTask int) (float64, float64) {
	sem := make(chan struct{}, permits)
	var sink atomic.Int64
	pairs := func(k int) {
		for i := 0; i < k; i++ {
			sem <- struct{}{}
			sink.Add(1)
			<-sem
		}
	}
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(tasks)
	done.Add(tasks)
	for i := 0; i < tasks; i++ {
		go func() {
			pairs(warmPairs)
			ready.Done()
			<-start
			pairs(perTask)
			done.Done()
		}()
	}
	ready.Wait()
	c0 := cpuSeconds()
	t0 := time.Now()
	close(start)
	done.Wait()
	wall := time.Since(t0).Seconds()
	ops := float64(perTask * tasks)
	return wall * 1e9 / ops, (cpuSeconds() - c0) * 1e9 / ops
}

func report(scenario string, runs int, run func() (float64, float64)) {
	var wall, cpu []float64
	for r := 0; r < runs; r++ {
		w, c := run()
		wall = append(wall, w)
		cpu = append(cpu, c)
	}
	fmt.Printf("BENCH %s go ns_per_op=%.1f cpu_ns_per_op=%.1f runs=%d\n", scenario, median(wall), median(cpu), runs)
}

func main() {
	n := flag.Int("n", 400000, "acquire + release pairs")
	runs := flag.Int("runs", 5, "runs")
	flag.Parse()
	report("sem_uncontended", *runs, func() (float64, float64) { return timed(1, *n) })
	report("sem_contended_8", *runs, func() (float64, float64) { return timed(contendedTasks, *n/contendedTasks) })
}
