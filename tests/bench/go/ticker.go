// Go baseline for leash's bench_ticker: a time.Ticker at 1 ms for 2 s. For
// each tick received, lateness = time received - the grid point it belongs
// to (start + k*period, k from the tick's own timestamp). Prints the median
// over -runs runs of p50/p99/max lateness in µs and the ticks received.
//
//	go run ticker.go [-ms 2000] [-period_us 1000] [-runs 3]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"
)

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}

type summary struct{ p50, p99, max, ticks float64 }

func once(period, length time.Duration) summary {
	var late []float64
	start := time.Now()
	t := time.NewTicker(period)
	defer t.Stop()
	end := start.Add(length)
	for {
		tv := <-t.C
		now := time.Now()
		if now.After(end) {
			break
		}
		k := tv.Sub(start) / period
		sched := start.Add(k * period)
		late = append(late, float64(now.Sub(sched).Nanoseconds())/1e3)
	}
	sort.Float64s(late)
	if len(late) == 0 {
		return summary{}
	}
	pct := func(p float64) float64 {
		i := int(p * float64(len(late)))
		if i >= len(late) {
			i = len(late) - 1
		}
		return late[i]
	}
	return summary{pct(0.50), pct(0.99), late[len(late)-1], float64(len(late))}
}

func main() {
	ms := flag.Int("ms", 2000, "run length in ms")
	periodUs := flag.Int("period_us", 1000, "ticker period in µs")
	runs := flag.Int("runs", 3, "timed repetitions (median reported)")
	flag.Parse()
	if *ms < 1 || *periodUs < 1 || *runs < 1 {
		fmt.Fprintln(os.Stderr, "-ms, -period_us and -runs must be >= 1")
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "# ticker: ms=%d period_us=%d runs=%d GOMAXPROCS=%d %s\n",
		*ms, *periodUs, *runs, runtime.GOMAXPROCS(0), runtime.Version())
	var p50, p99, max, ticks []float64
	for r := 0; r < *runs; r++ {
		s := once(time.Duration(*periodUs)*time.Microsecond, time.Duration(*ms)*time.Millisecond)
		p50 = append(p50, s.p50)
		p99 = append(p99, s.p99)
		max = append(max, s.max)
		ticks = append(ticks, s.ticks)
	}
	fmt.Printf("BENCH ticker go_time_ticker p50_us=%.1f p99_us=%.1f max_us=%.1f ticks=%.0f expected_ticks=%d runs=%d\n",
		median(p50), median(p99), median(max), median(ticks), *ms*1000 / *periodUs, *runs)
}
