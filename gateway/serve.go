package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// shutdownGrace is how long Serve lets requests in flight finish after its
// context is cancelled before it cancels their generations and closes.
var shutdownGrace = 15 * time.Second

// Serve listens on addr (":0" picks a free port), logs the bound address
// through slog.Default() and serves h until ctx is cancelled, then shuts
// down gracefully. Use ServeListener to learn the address in code.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s: %w", addr, err)
	}
	slog.Default().Info("gateway listening", "addr", ln.Addr().String(), "url", URL(ln.Addr()))
	return ServeListener(ctx, ln, h)
}

// URL is the base URL of a server listening on addr; an unspecified host
// (":0", "[::]:8080") becomes localhost.
func URL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// ServeListener serves h on ln until ctx is cancelled. It then stops
// accepting connections and waits up to a grace period for requests in
// flight, after which it cancels their contexts (ending generations) and
// closes. It returns nil after a shutdown, or the error that stopped serving.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler) error {
	return serveListener(ctx, ln, h, serveConfig{grace: shutdownGrace, readHeader: 10 * time.Second})
}

// serveConfig tunes serveListener.
type serveConfig struct {
	grace      time.Duration // requests in flight may finish within it
	readHeader time.Duration // slow clients: the headers must arrive within it
	onShutdown func()        // run when the shutdown starts (the gateway turns /readyz to 503)
}

func serveListener(ctx context.Context, ln net.Listener, h http.Handler, sc serveConfig) error {
	grace, onShutdown := sc.grace, sc.onShutdown
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: sc.readHeader,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("gateway: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	if onShutdown != nil {
		onShutdown()
	}
	shCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(shCtx); err != nil {
		slog.Default().Warn("gateway: requests still running after the grace period; cancelling them",
			"grace", grace, "err", err)
		cancelBase()
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: serve on %s: %w", ln.Addr(), err)
	}
	return nil
}
