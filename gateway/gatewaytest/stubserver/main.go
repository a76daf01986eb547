// Command stubserver runs gatewaytest.Upstream, a stand-in OpenAI and
// Anthropic provider, for end-to-end tests and load benchmarks of the
// gateway.
//
//	stubserver -addr 127.0.0.1:9000 [-key sk-...] [-prefix "premium: "] [-delay 0]
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/distillery/distillery/gateway/gatewaytest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	key := flag.String("key", "", "API key every request must carry")
	prefix := flag.String("prefix", "", "answer prefix")
	delay := flag.Duration("delay", 0, "delay before each reply")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "listening on %s\n", ln.Addr())
	u := &gatewaytest.Upstream{Key: *key, Prefix: *prefix, Delay: *delay}
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}
