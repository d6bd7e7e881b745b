// Go baseline for leash's bench_deadline_scope: the cost of opening and
// closing a deadline scope, i.e. context.WithTimeout followed by cancel()
// on a background parent. Prints the median ns per op over -runs runs.
//
//	go run deadline_scope.go [-iters 1000000] [-runs 5]
package main

import (
	"context"
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

// once times iters WithTimeout+cancel pairs. The 250 ms timeout never fires:
// WithTimeout arms a runtime timer and cancel() stops it, which is exactly
// the cost a deadline scope pays when the work finishes in time.
func once(parent context.Context, iters int) float64 {
	start := time.Now()
	for i := 0; i < iters; i++ {
		_, cancel := context.WithTimeout(parent, 250*time.Millisecond)
		cancel()
	}
	return float64(time.Since(start).Nanoseconds()) / float64(iters)
}

func main() {
	iters := flag.Int("iters", 1000000, "WithTimeout+cancel pairs per run")
	runs := flag.Int("runs", 5, "timed repetitions (median reported)")
	flag.Parse()
	if *iters < 1 || *runs < 1 {
		fmt.Fprintln(os.Stderr, "-iters and -runs must be >= 1")
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "# deadline_scope: iters=%d runs=%d GOMAXPROCS=%d %s\n",
		*iters, *runs, runtime.GOMAXPROCS(0), runtime.Version())

	parent := context.Background()
	once(parent, *iters/10+1) // untimed warm-up
	perOp := make([]float64, *runs)
	for r := range perOp {
		perOp[r] = once(parent, *iters)
	}
	fmt.Printf("BENCH deadline_scope go_context_withtimeout ns_per_op=%.1f runs=%d\n",
		median(perOp), *runs)
}
