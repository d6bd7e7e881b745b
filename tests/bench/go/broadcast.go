// Go baseline for leash's bench_broadcast: Go has no broadcast channel, so
// one fan-out goroutine forwards every value to 8 buffered channels (capacity
// 1024), one per receiver goroutine. The fan-out waits for the slowest
// receiver, so nothing is skipped. Prints the median wall and CPU (user+sys
// of the process) ns per value sent, from the first send until every
// receiver saw the close.
//
//	go run broadcast.go [-n 400000] [-runs 5]
package main

import (
	"flag"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"
)

const (
	receivers = 8    // the "8" of the scenario's name
	capacity  = 1024 // each receiver's buffer, as leash's ring
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

func timed(n int) (float64, float64) {
	in := make(chan int64, capacity)
	outs := make([]chan int64, receivers)
	for i := range outs {
		outs[i] = make(chan int64, capacity)
	}
	var done sync.WaitGroup
	done.Add(receivers)
	received := make([]int64, receivers)
	for i := 0; i < receivers; i++ {
		go func(i int) {
			for range outs[i] {
				received[i]++
			}
			done.Done()
		}(i)
	}
	go func() { // the fan-out
		for v := range in {
			for _, o := range outs {
				o <- v
			}
		}
		for _, o := range outs {
			close(o)
		}
	}()
	c0 := cpuSeconds()
	t0 := time.Now()
	for v := 0; v < n; v++ {
		in <- int64(v)
	}
	close(in)
	done.Wait()
	wall := time.Since(t0).Seconds()
	return wall * 1e9 / float64(n), (cpuSeconds() - c0) * 1e9 / float64(n)
}

func main() {
	n := flag.Int("n", 400000, "values sent")
	runs := flag.Int("runs", 5, "runs")
	flag.Parse()
	var wall, cpu []float64
	for r := 0; r < *runs; r++ {
		w, c := timed(*n)
		wall = append(wall, w)
		cpu = append(cpu, c)
	}
	fmt.Printf("BENCH bcast_8 go ns_per_value=%.1f cpu_ns_per_value=%.1f missed_pct=0.0 runs=%d\n",
		median(wall), median(cpu), *runs)
}
