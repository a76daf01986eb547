package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/distillery/distillery/gateway/gatewaytest"
)

// BenchmarkProxyPath times one chat request through the gateway's proxy
// path (scored, capped, routed to the premium tier, not cached) over
// loopback HTTP, upstream stub included. Profile it with
//
//	go test ./gateway -run '^$' -bench ProxyPath -cpuprofile cpu.out
func BenchmarkProxyPath(b *testing.B) {
	up := httptest.NewServer(&gatewaytest.Upstream{Prefix: "premium: "})
	defer up.Close()
	cfg, err := ParseConfig("bench.yaml", []byte(fmt.Sprintf(`
models:
  - name: chat
tiers:
  premium: {base_url: %s/v1, model: premium-model, price: {input_per_mtok: 5, output_per_mtok: 15}}
premium_cap: {share: 1}
`, up.URL)))
	if err != nil {
		b.Fatal(err)
	}
	g, err := NewGateway(context.Background(), cfg, GatewayOptions{Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	ts := httptest.NewServer(g.Handler())
	defer ts.Close()
	body := []byte(`{"model":"chat","messages":[{"role":"user","content":"Summarise the return policy for opened coffee bags in one line."}],"max_tokens":16}`)
	client := ts.Client()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(ts.URL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderTier) != TierPremium {
			b.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
	}
}
