// Go baseline for leash's bench_http_keepalive: keep-alive GETs of a small
// (128 B) and a large (1 MiB) file from nginx on loopback (LEASH_BENCH_NGINX=host:port, started by
// run.sh), 1 and 8 workers, with the default Transport (MaxIdleConnsPerHost
// = 2) and one tuned to the worker count. Median of 3 runs of 1 s.
//
//	LEASH_BENCH_NGINX=127.0.0.1:8080 go run http_keepalive.go
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func once(url string, workers int, tuned bool) (float64, int64) {
	var dials int64
	d := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			atomic.AddInt64(&dials, 1)
			return d.DialContext(ctx, network, addr)
		},
	}
	if tuned {
		tr.MaxIdleConnsPerHost = workers
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var done int64
	until := time.Now().Add(time.Second)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(until) {
				resp, err := client.Get(url)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				atomic.AddInt64(&done, 1)
			}
		}()
	}
	wg.Wait()
	return float64(done) / time.Since(start).Seconds(), dials
}

func main() {
	peer := os.Getenv("LEASH_BENCH_NGINX")
	if peer == "" {
		fmt.Println("SKIP http_keepalive: set LEASH_BENCH_NGINX=host:port (run.sh starts nginx)")
		return
	}
	for _, file := range []string{"/small.txt", "/big.bin"} {
		url := "http://" + peer + file
		scenario := "http_keepalive"
		if file == "/big.bin" {
			scenario = "http_keepalive_1mib"
		}
		for _, workers := range []int{1, 8} {
			for _, tuned := range []bool{false, true} {
				type result struct {
					rate  float64
					dials int64
				}
				var rs []result
				for run := 0; run < 3; run++ {
					r, d := once(url, workers, tuned)
					rs = append(rs, result{r, d})
				}
				sort.Slice(rs, func(i, j int) bool { return rs[i].rate < rs[j].rate })
				name := "go_default"
				if tuned {
					name = "go_tuned"
				}
				fmt.Printf("BENCH %s %s_%dw req_per_s=%.0f dials=%d\n", scenario, name, workers,
					rs[1].rate, rs[1].dials)
			}
		}
	}
}
