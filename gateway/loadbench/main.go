// Command loadbench measures the gateway's added latency and throughput on
// loopback, against nginx proxy_pass to the same upstream.
//
//	go run ./gateway/loadbench -distillery bin/distillery -rps 1000 -duration 10s
//
// It starts the stub provider (gatewaytest.Upstream) and, when nginx is on
// PATH, nginx with proxy_pass to it, and `distillery serve --config` with
// the stub as its premium tier. An open-loop generator sends -rps requests
// a second to each path in turn: direct to the stub, through nginx,
// through a minimal Go reverse proxy (net/http/httputil, this binary run
// with -reverse-proxy: the floor of any net/http proxy on the machine),
// through the gateway's proxy path (a cache miss: temperature 1), and the
// gateway's exact-match cache path (temperature 0, answered from the
// cache). Added latency is each path's latency percentile minus the direct
// path's; the report gives the gateway's added p50/p99 as a ratio to
// nginx's. The semantic-cache lookup (embedding included) is timed
// in-process, separately.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distillery/distillery/gateway"
	"github.com/distillery/distillery/gateway/gatewaytest"
)

func main() {
	bin := flag.String("distillery", "bin/distillery", "the distillery binary")
	rps := flag.Int("rps", 1000, "requests per second")
	dur := flag.Duration("duration", 10*time.Second, "duration of each path's run")
	revProxy := flag.String("reverse-proxy", "", "internal: serve a plain httputil reverse proxy to this URL on -listen")
	listenAddr := flag.String("listen", "", "internal: the reverse proxy's address")
	flag.Parse()
	if *revProxy != "" {
		serveReverseProxy(*revProxy, *listenAddr)
		return
	}
	tmp, err := os.MkdirTemp("", "loadbench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	upLn := listen()
	up := &http.Server{Handler: &gatewaytest.Upstream{Prefix: "premium: "}}
	go up.Serve(upLn)
	upURL := "http://" + upLn.Addr().String()

	paths := []struct{ name, url, body string }{{"direct", upURL + "/v1/chat/completions", body(1)}}

	if nginx, err := exec.LookPath("nginx"); err == nil {
		port := freePort()
		conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  upstream up { server %[2]s; keepalive 256; }
  server {
    listen 127.0.0.1:%[3]s;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
`, tmp, upLn.Addr().String(), port)
		os.WriteFile(filepath.Join(tmp, "nginx.conf"), []byte(conf), 0o644)
		cmd := exec.Command(nginx, "-c", filepath.Join(tmp, "nginx.conf"), "-g", "daemon off;")
		defer startProxy(cmd, port).Kill()
		paths = append(paths, struct{ name, url, body string }{"nginx", chatURL(port), body(1)})
	} else {
		fmt.Println("nginx not found: no baseline")
	}

	if self, err := os.Executable(); err == nil {
		port := freePort()
		cmd := exec.Command(self, "-reverse-proxy", upURL, "-listen", "127.0.0.1:"+port)
		defer startProxy(cmd, port).Kill()
		paths = append(paths, struct{ name, url, body string }{"go-reverse-proxy", chatURL(port), body(1)})
	}

	gwPort := freePort()
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%s
models:
  - name: auto
tiers:
  premium: {base_url: %s/v1, model: stub}
cache: {enabled: true, embedder: hashed}
limits: {max_inflight: 8192}
`, gwPort, upURL)
	cfgPath := filepath.Join(tmp, "gateway.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	gw := exec.Command(*bin, "serve", "--config", cfgPath)
	var gwLog bytes.Buffer
	gw.Stderr = &gwLog
	if err := gw.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { gw.Process.Signal(os.Interrupt); gw.Wait() }()
	gwURL := chatURL(gwPort)
	waitUp("http://127.0.0.1:" + gwPort + "/readyz")
	// Warm the exact-match entry.
	for range 3 {
		post(http.DefaultClient, gwURL, body(0))
		time.Sleep(50 * time.Millisecond)
	}
	paths = append(paths,
		struct{ name, url, body string }{"gateway-proxy", gwURL, body(1)},
		struct{ name, url, body string }{"gateway-cache-hit", gwURL, body(0)})

	res := map[string]result{}
	for _, p := range paths {
		r := run(p.url, p.body, *rps, *dur)
		res[p.name] = r
		fmt.Printf("%-18s sent %6d ok %6d errors %4d  achieved %6.0f rps  p50 %7.3f ms  p99 %7.3f ms\n",
			p.name, r.sent, r.ok, r.errors, r.achieved, ms(r.p50), ms(r.p99))
	}
	d := res["direct"]
	added := func(name string) (time.Duration, time.Duration) {
		r := res[name]
		return r.p50 - d.p50, r.p99 - d.p99
	}
	fmt.Println()
	fmt.Println("added latency over direct (p50, p99):")
	for _, n := range []string{"nginx", "go-reverse-proxy", "gateway-proxy", "gateway-cache-hit"} {
		if _, ok := res[n]; !ok {
			continue
		}
		a50, a99 := added(n)
		fmt.Printf("  %-18s %7.3f ms  %7.3f ms\n", n, ms(a50), ms(a99))
	}
	if _, ok := res["nginx"]; ok {
		n50, n99 := added("nginx")
		for _, n := range []string{"gateway-proxy", "gateway-cache-hit"} {
			a50, a99 := added(n)
			fmt.Printf("  %-18s / nginx: p50 %.2fx, p99 %.2fx; latency ratio to nginx p50 %.2fx, p99 %.2fx\n", n,
				ratio(a50, n50), ratio(a99, n99), float64(res[n].p50)/float64(res["nginx"].p50), float64(res[n].p99)/float64(res["nginx"].p99))
		}
	}
	if g, ok := res["go-reverse-proxy"]; ok {
		r := res["gateway-proxy"]
		fmt.Printf("  gateway-proxy over go-reverse-proxy: p50 %+.3f ms, p99 %+.3f ms (the gateway's own work)\n",
			ms(r.p50-g.p50), ms(r.p99-g.p99))
	}
	semantic()
}

// startProxy starts a proxy listening on port and waits until it answers.
func startProxy(cmd *exec.Cmd, port string) *os.Process {
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	waitUp(chatURL(port))
	return cmd.Process
}

func chatURL(port string) string { return "http://127.0.0.1:" + port + "/v1/chat/completions" }

// serveReverseProxy is the baseline a Go proxy cannot beat: net/http's
// server and client with nothing in between.
func serveReverseProxy(upstream, addr string) {
	u, err := url.Parse(upstream)
	if err != nil {
		log.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	log.Fatal(http.ListenAndServe(addr, p))
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func body(temp int) string {
	return fmt.Sprintf(`{"model":"auto","temperature":%d,"messages":[{"role":"user","content":"Design a globally distributed, strongly consistent key-value store with multi-region writes; specify the consensus protocol, failure handling and latency budget."}]}`, temp)
}

func listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	return ln
}

func freePort() string {
	ln := listen()
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

func waitUp(url string) {
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return
		}
	}
	log.Fatalf("%s did not come up", url)
}

func post(c *http.Client, url, b string) error {
	resp, err := c.Post(url, "application/json", strings.NewReader(b))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

type result struct {
	sent, ok, errors int
	achieved         float64
	p50, p99         time.Duration
}

// run sends rps requests a second for d (open loop: each request starts on
// schedule, whatever the ones before it do) and returns the latencies.
func run(url, b string, rps int, d time.Duration) result {
	tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	// warm the connections
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() { defer wg.Done(); post(c, url, b) }()
	}
	wg.Wait()
	n := int(float64(rps) * d.Seconds())
	lat := make([]time.Duration, n)
	errs := make([]bool, n)
	interval := time.Second / time.Duration(rps)
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t0 := time.Now()
			err := post(c, url, b)
			lat[i] = time.Since(t0)
			errs[i] = err != nil
		}(i)
	}
	wg.Wait()
	el := time.Since(start)
	r := result{sent: n}
	var ok []time.Duration
	for i := range n {
		if errs[i] {
			r.errors++
		} else {
			ok = append(ok, lat[i])
		}
	}
	r.ok = len(ok)
	r.achieved = float64(r.ok) / el.Seconds()
	sort.Slice(ok, func(i, j int) bool { return ok[i] < ok[j] })
	if len(ok) > 0 {
		r.p50 = ok[len(ok)/2]
		r.p99 = ok[len(ok)*99/100]
	}
	tr.CloseIdleConnections()
	return r
}

// semantic times the semantic-cache lookup, embedding included, on a
// cache of 10,000 entries in one scope.
func semantic() {
	bench := gateway.SemanticLookupBench(10000, 2000)
	fmt.Printf("\nsemantic cache lookup (hashed embedder + HNSW, 10,000 entries): p50 %.1f µs, p99 %.1f µs; embedding alone p50 %.1f µs\n",
		us(bench.P50), us(bench.P99), us(bench.EmbedP50))
	_ = context.Background
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
