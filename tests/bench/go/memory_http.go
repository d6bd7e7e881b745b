// Go baseline for leash's bench_memory_http: keep-alive GET round trips of
// an http.Client over in-memory connections (net.Pipe), the response's body
// read to its end each time.
//
//	go          Transport.DialContext returns one end of a net.Pipe; a
//	            goroutine on the other end runs the same stub as leash's
//	            bench: read until a request head's "\r\n\r\n", write a fixed
//	            5-byte response
//	go_server   http.Server.Serve on a listener that hands out the pipes'
//	            other ends (the full server: request parsing, handler,
//	            response writer)
//
// Scenarios: mem_roundtrip (one client, sequential round trips) and
// mem_roundtrip_8 (8 goroutines at once, each on its own pooled
// connection; wall ns over all round trips). Every connection is dialed and
// has carried a few round trips before the clock starts. Prints the median
// wall and CPU (user+sys of the process: client and server) ns per round
// trip.
//
//	go run memory_http.go [-n 20000] [-runs 5] [-pinned 1]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"syscall"
	"time"
)

const (
	response         = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	warmRoundTrips   = 100  // per client: dialed, pooled, caches warm
	readChunk        = 1024 // a request head usually arrives in one read
	concurrentClient = 8    // mem_roundtrip_8
	idlePerHost      = 16   // every client's connection stays pooled (Go's default is 2)
	url              = "http://mem.test/"
)

var headEnd = []byte("\r\n\r\n")

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

// stub answers each request head on c with the fixed response until the
// client closes.
func stub(c net.Conn) {
	defer c.Close()
	var pending []byte
	buf := make([]byte, readChunk)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.Index(pending, headEnd)
			if i < 0 {
				break
			}
			pending = pending[i+len(headEnd):]
			if _, err := io.WriteString(c, response); err != nil {
				return
			}
		}
	}
}

// pipeListener hands out the server ends of the pipes its dial makes.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, errors.New("pipeListener: closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func hello(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h["Date"] = nil         // as the stub: no Date
	h["Content-Type"] = nil // nor a sniffed Content-Type
	h.Set("Content-Length", "5")
	io.WriteString(w, "hello")
}

// newClient returns a client whose connections go to a stub (full=false) or
// an http.Server (full=true), and a function that stops the server side.
func newClient(full bool) (*http.Client, func()) {
	tr := &http.Transport{MaxIdleConnsPerHost: idlePerHost, MaxIdleConns: idlePerHost}
	client := &http.Client{Transport: tr}
	if !full {
		tr.DialContext = func(context.Context, string, string) (net.Conn, error) {
			c, s := net.Pipe()
			go stub(s)
			return c, nil
		}
		return client, tr.CloseIdleConnections
	}
	l := newPipeListener()
	tr.DialContext = l.dial
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	served := make(chan struct{})
	go func() { srv.Serve(l); close(served) }()
	return client, func() {
		tr.CloseIdleConnections()
		srv.Close()
		<-served
	}
}

func roundTrips(client *http.Client, k int) {
	for i := 0; i < k; i++ {
		resp, err := client.Get(url)
		if err != nil {
			panic(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(body) != 5 {
			panic(fmt.Sprintf("short body %q: %v", body, err))
		}
	}
}

// clientsRound runs `clients` goroutines of k round trips each to completion.
func clientsRound(client *http.Client, clients, k int) {
	var wg sync.WaitGroup
	wg.Add(clients)
	for c := 0; c < clients; c++ {
		go func() { defer wg.Done(); roundTrips(client, k) }()
	}
	wg.Wait()
}

// timedRun: a fresh client and server, warm round trips, then n round trips
// split over the clients, timed; wall and CPU ns per round trip.
func timedRun(clients, n int, full bool) (float64, float64) {
	client, stop := newClient(full)
	defer stop()
	clientsRound(client, clients, warmRoundTrips)
	perClient := n / clients
	total := float64(perClient * clients)
	c0 := cpuSeconds()
	t0 := time.Now()
	clientsRound(client, clients, perClient)
	wall := time.Since(t0).Seconds()
	return wall * 1e9 / total, (cpuSeconds() - c0) * 1e9 / total
}

func main() {
	n := flag.Int("n", 20000, "round trips per run")
	runs := flag.Int("runs", 5, "runs")
	pinned := flag.Int("pinned", 0, "tag scenarios as pinned (run.sh runs it under taskset -c 0)")
	flag.Parse()
	tag := ""
	if *pinned != 0 {
		tag = "_pinned"
	}
	for _, clients := range []int{1, concurrentClient} {
		scenario := "mem_roundtrip"
		if clients > 1 {
			scenario = fmt.Sprintf("mem_roundtrip_%d", clients)
		}
		scenario += tag
		for _, full := range []bool{false, true} {
			impl := "go"
			if full {
				impl = "go_server"
			}
			var wall, cpu []float64
			for r := 0; r < *runs; r++ {
				w, c := timedRun(clients, *n, full)
				wall = append(wall, w)
				cpu = append(cpu, c)
			}
			fmt.Printf("BENCH %s %s ns_per_op=%.1f cpu_ns_per_op=%.1f runs=%d\n", scenario, impl, median(wall), median(cpu), *runs)
		}
	}
}
