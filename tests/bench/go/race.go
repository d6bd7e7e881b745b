// Go baseline for leash's bench_race: the usual hand-written race of two
// goroutines. Each sends its value to a buffered channel of 2; the first
// receive wins; the context is cancelled and both goroutines are waited for
// (leash::race joins its losers, so this does too). Prints the median wall and
// CPU (user+sys of the process) ns per race.
//
//	go run race.go [-n 20000] [-runs 5]
package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"
)

const warmRaces = 200 // before the clock starts

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

// race2 runs two goroutines and returns the first value; with loserBlocked
// the second waits for the cancel instead of sending.
func race2(loserBlocked bool) int {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan int, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ch <- 1 }()
	go func() {
		defer wg.Done()
		if loserBlocked {
			<-ctx.Done()
			return
		}
		ch <- 2
	}()
	v := <-ch
	cancel()
	wg.Wait()
	return v
}

func timed(n int, loserBlocked bool) (float64, float64) {
	for i := 0; i < warmRaces; i++ {
		race2(loserBlocked)
	}
	c0 := cpuSeconds()
	t0 := time.Now()
	sum := 0
	for i := 0; i < n; i++ {
		sum += race2(loserBlocked)
	}
	wall := time.Since(t0).Seconds()
	if sum < n {
		panic("lost a value")
	}
	return wall * 1e9 / float64(n), (cpuSeconds() - c0) * 1e9 / float64(n)
}

func main() {
	n := flag.Int("n", 20000, "races per run")
	runs := flag.Int("runs", 5, "runs")
	flag.Parse()
	for _, blocked := range []bool{false, true} {
		scenario := "race2_both_ready"
		if blocked {
			scenario = "race2_loser_blocked"
		}
		var wall, cpu []float64
		for r := 0; r < *runs; r++ {
			w, c := timed(*n, blocked)
			wall = append(wall, w)
			cpu = append(cpu, c)
		}
		fmt.Printf("BENCH %s go ns_per_op=%.1f cpu_ns_per_op=%.1f runs=%d\n", scenario, median(wall), median(cpu), *runs)
	}
}
