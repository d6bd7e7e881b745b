// Go baseline for leash's bench_io_idle: idle connections against a plain
// net package echo server (one goroutine per connection).
//
//	io_idle_1k / io_idle_10k  N idle connections held open; server RSS and
//	                          threads with them (and before), the time to
//	                          open them one after another, and the median
//	                          connect + one echo of fresh requests meanwhile
//	io_burst_2k               2 000 connects at once, each followed by one
//	                          echo: p50 / p99 of connect + echo
//
// The server is this program started again with -mode server, the listener
// handed over as fd 3, so its figures are its own. RLIMIT_NOFILE is raised
// soft to hard in both processes.
//
//	go run io_idle.go [-burst 2000] [-fresh 200]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func statusOf(pid int, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, key+":") {
			fields := strings.Fields(line[len(key)+1:])
			if len(fields) > 0 {
				if v, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					return v
				}
			}
		}
	}
	return -1
}

func raiseFdLimit() uint64 {
	var l syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	l.Cur = l.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur
}

func serve() {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "io_idle server:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		}(c)
	}
}

func freshRequest(addr string) float64 {
	text := []byte(strings.Repeat("x", 64))
	t0 := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "io_idle:", err)
		os.Exit(1)
	}
	defer c.Close()
	c.Write(text)
	back := make([]byte, len(text))
	if _, err := io.ReadFull(c, back); err != nil {
		fmt.Fprintln(os.Stderr, "io_idle:", err)
		os.Exit(1)
	}
	return float64(time.Since(t0).Microseconds())
}

func percentile(v []float64, p float64) float64 {
	sort.Float64s(v)
	i := int(p * float64(len(v)))
	if i >= len(v) {
		i = len(v) - 1
	}
	return v[i]
}

func idleRow(server int, addr string, count int, scenario string, fresh int) {
	base := statusOf(server, "VmRSS")
	idle := make([]net.Conn, 0, count)
	t0 := time.Now()
	for i := 0; i < count; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "io_idle:", err)
			os.Exit(1)
		}
		idle = append(idle, c)
	}
	openMs := float64(time.Since(t0).Microseconds()) / 1000
	us := make([]float64, 0, fresh)
	for i := 0; i < fresh; i++ {
		us = append(us, freshRequest(addr))
	}
	fmt.Printf("BENCH %s go open_ms=%.1f fresh_p50_us=%.1f server_rss_kb=%d server_rss_base_kb=%d server_threads=%d\n",
		scenario, openMs, percentile(us, 0.5), statusOf(server, "VmRSS"), base, statusOf(server, "Threads"))
	for _, c := range idle {
		c.Close()
	}
}

func burstRow(addr string, count int) {
	us := make([]float64, count)
	var wg sync.WaitGroup
	for i := 0; i < count; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			us[i] = freshRequest(addr)
		}(i)
	}
	wg.Wait()
	fmt.Printf("BENCH io_burst_2k go p50_us=%.0f p99_us=%.0f\n", percentile(us, 0.5), percentile(us, 0.99))
}

func main() {
	mode := flag.String("mode", "client", "client or server")
	burst := flag.Int("burst", 2000, "simultaneous connects")
	fresh := flag.Int("fresh", 200, "fresh requests while connections idle")
	flag.Parse()
	limit := raiseFdLimit()
	if *mode == "server" {
		serve()
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "io_idle:", err)
		os.Exit(1)
	}
	addr := ln.Addr().String()
	f, _ := ln.(*net.TCPListener).File()
	cmd := exec.Command(os.Args[0], "-mode", "server")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "io_idle:", err)
		os.Exit(1)
	}
	ln.Close()
	f.Close()
	time.Sleep(200 * time.Millisecond) // the server starts
	server := cmd.Process.Pid
	fmt.Printf("BENCH io_idle_1k go fd_limit=%d\n", limit)
	big := 10000
	if limit < 10100 {
		big = int(limit) - 100
	}
	idleRow(server, addr, 1000, "io_idle_1k", *fresh)
	time.Sleep(500 * time.Millisecond) // the server drops them
	idleRow(server, addr, big, "io_idle_10k", *fresh)
	time.Sleep(500 * time.Millisecond)
	burstRow(addr, *burst)
	cmd.Process.Kill()
	cmd.Wait()
}
