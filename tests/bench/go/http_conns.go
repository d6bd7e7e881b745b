// Go server for leash's bench_http_conns: net/http answering every request
// with the same 128-byte body as the leash server there (http.Server with
// keep-alive on and one timeout: ReadHeaderTimeout, from the
// -read_header_timeout_ms flag that bench_http_conns sets to the leash
// server's header_timeout).
//
// bench_http_conns starts it (run.sh builds it and passes its path in
// LEASH_BENCH_GO_HTTP_CONNS), reads the port from its first stdout line and
// measures it from outside (threads and RSS from /proc). It listens on
// 127.0.0.1 with an ephemeral port, raises RLIMIT_NOFILE soft to hard, and
// exits when its stdin reaches EOF, so that it never outlives the benchmark.
//
//	go build -o http_conns http_conns.go && ./http_conns -read_header_timeout_ms=10000 </dev/zero
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

func raiseFdLimit() {
	var l syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	l.Cur = l.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

func main() {
	readHeaderTimeoutMs := flag.Int("read_header_timeout_ms", 10000,
		"the whole request head must arrive within this (leash's header_timeout)")
	flag.Parse()
	raiseFdLimit()
	body := []byte(strings.Repeat("x", 127) + "\n")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "http_conns server:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		}),
		ReadHeaderTimeout: time.Duration(*readHeaderTimeoutMs) * time.Millisecond,
	}
	fmt.Fprintln(os.Stderr, "http_conns server:", srv.Serve(ln))
	os.Exit(1)
}
