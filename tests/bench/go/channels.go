// Go baseline for leash's bench_channels: the same scenarios with Go channels.
// Goroutines are started and warmed before the clock starts; prints the median
// wall and CPU (user+sys of the process) ns per operation.
//
//	go run channels.go [-n 200000] [-runs 5] [-pinned 1]
package main

import (
	"flag"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"
)

const warmItems = 1000

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

// timed runs each body in its own goroutine after its warm-up; the clock runs
// from the start signal until all bodies returned.
func timed(warm, work []func(), ops int) (float64, float64) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(len(work))
	done.Add(len(work))
	for i := range work {
		go func(i int) {
			warm[i]()
			ready.Done()
			<-start
			work[i]()
			done.Done()
		}(i)
	}
	ready.Wait()
	c0 := cpuSeconds()
	t0 := time.Now()
	close(start)
	done.Wait()
	wall := time.Since(t0).Seconds()
	return wall * 1e9 / float64(ops), (cpuSeconds() - c0) * 1e9 / float64(ops)
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

func producersConsumers(capacity, producers, consumers, n int) (float64, float64) {
	ch := make(chan int, capacity)
	var warm, work []func()
	perProducer, perConsumer := n/producers, n/consumers
	for p := 0; p < producers; p++ {
		warm = append(warm, func() {
			for i := 0; i < warmItems/producers; i++ {
				ch <- i
			}
		})
		work = append(work, func() {
			for i := 0; i < perProducer; i++ {
				ch <- i
			}
		})
	}
	for c := 0; c < consumers; c++ {
		warm = append(warm, func() {
			for i := 0; i < warmItems/consumers; i++ {
				<-ch
			}
		})
		work = append(work, func() {
			for i := 0; i < perConsumer; i++ {
				<-ch
			}
		})
	}
	return timed(warm, work, perProducer*producers)
}

func pingpong(n int) (float64, float64) {
	ping, pong := make(chan int), make(chan int)
	a := func(k int) {
		for i := 0; i < k; i++ {
			ping <- i
			<-pong
		}
	}
	b := func(k int) {
		for i := 0; i < k; i++ {
			pong <- <-ping
		}
	}
	return timed([]func(){func() { a(warmItems) }, func() { b(warmItems) }},
		[]func(){func() { a(n) }, func() { b(n) }}, n)
}

func select2(n int) (float64, float64) {
	a, b := make(chan int, 1024), make(chan int, 1024)
	produce := func(ch chan int, k int) {
		for i := 0; i < k; i++ {
			ch <- i
		}
	}
	sum := 0
	consume := func(k int) {
		for i := 0; i < k; i++ {
			select {
			case v := <-a:
				sum += v
			case v := <-b:
				sum += v
			}
		}
	}
	return timed([]func(){func() { produce(a, warmItems) }, func() { produce(b, warmItems) }, func() { consume(2 * warmItems) }},
		[]func(){func() { produce(a, n/2) }, func() { produce(b, n/2) }, func() { consume(n) }}, n)
}

func main() {
	n := flag.Int("n", 200000, "items")
	runs := flag.Int("runs", 5, "runs")
	pinned := flag.Int("pinned", 0, "tag scenarios as pinned")
	flag.Parse()
	tag := ""
	if *pinned != 0 {
		tag = "_pinned"
	}
	report("chan_pingpong"+tag, *runs, func() (float64, float64) { return pingpong(*n / 4) })
	report("chan_spsc"+tag, *runs, func() (float64, float64) { return producersConsumers(1024, 1, 1, *n) })
	report("chan_mpsc"+tag, *runs, func() (float64, float64) { return producersConsumers(1024, 4, 1, *n) })
	for _, c := range []int{0, 1, 1024} {
		c := c
		report(fmt.Sprintf("chan_mpmc_c%d%s", c, tag), *runs, func() (float64, float64) { return producersConsumers(c, 4, 4, *n) })
	}
	report("chan_select2"+tag, *runs, func() (float64, float64) { return select2(*n) })
}
