package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/gateway"
	"github.com/distillery/distillery/model"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve one model (--model DIR) or the routed gateway (--config gateway.yaml) behind an OpenAI-compatible API",
		Description: `With --model, one checkpoint answers /v1/chat/completions, /v1/completions, /v1/models and /healthz.
With --config, the gateway routes each request between a student, a mid tier and a premium tier
(complexity routing, premium cap, confidence cascade, semantic cache); see docs/gateway.md.
--hash-key reads an API key on stdin and prints the sha256 that gateway.yaml stores.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "gateway.yaml: run the routed gateway"},
			&cli.BoolFlag{Name: "hash-key", Usage: "read an API key from stdin, print its sha256 for gateway.yaml, and exit"},
			&cli.StringFlag{Name: "model", Usage: "checkpoint folder with tokenizer.json (single-model mode)"},
			&cli.StringFlag{Name: "id", Usage: "model id clients send (default: the folder name)"},
			&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer.json or its folder (default: the model folder)"},
			&cli.StringFlag{Name: "addr", Usage: "listen address (port 0 picks a free port; default 127.0.0.1:8089, or the config's listen)"},
			&cli.IntFlag{Name: "max-concurrent", Value: gateway.DefaultMaxConcurrent, Usage: "generations running at once"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "compute dtype: f32 or bf16"},
			backendFlag,
		},
		Subcommands: []*cli.Command{costCommand()},
		Action:      serveAction,
	}
}

func serveAction(c *cli.Context) error {
	switch {
	case c.Bool("hash-key"):
		line, err := bufio.NewReader(c.App.Reader).ReadString('\n')
		key := strings.TrimSpace(line)
		if key == "" {
			return usageError("--hash-key: no key on stdin (%v)", err)
		}
		fmt.Fprintln(c.App.Writer, gateway.HashKey(key))
		return nil
	case c.String("config") != "" && c.String("model") != "":
		return usageError("give --config or --model, not both")
	case c.String("config") != "":
		return serveGateway(c)
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	tokPath := c.String("tokenizer")
	if tokPath == "" {
		tokPath = c.String("model")
	}
	tok, err := model.LoadTokenizer(tokPath)
	if err != nil {
		return usageError("%v", err)
	}
	id := c.String("id")
	if id == "" {
		abs, _ := filepath.Abs(c.String("model"))
		id = filepath.Base(abs)
	}
	backend, err := gateway.NewLocal(id, m, tok)
	if err != nil {
		return usageError("%v", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv := gateway.NewServer(backend, gateway.Options{MaxConcurrent: c.Int("max-concurrent"), Logger: logger})
	addr := c.String("addr")
	if addr == "" {
		addr = "127.0.0.1:8089"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("serving", "model", id, "url", gateway.URL(ln.Addr())+"/v1", "chat_template", tok.ChatTemplate(), "backend", m.Backend.Name())
	return gateway.ServeListener(c.Context, ln, srv.Handler())
}

// serveGateway runs the routed gateway of a gateway.yaml.
func serveGateway(c *cli.Context) error {
	cfg, err := gateway.LoadConfig(c.String("config"))
	if err != nil {
		return usageError("%v", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	opts := gateway.GatewayOptions{Logger: logger}
	needsModel := false
	for _, m := range cfg.Models {
		needsModel = needsModel || (m.Student != nil && m.Student.Upstream == nil)
	}
	if needsModel {
		b, err := model.NewBackend(c.String("backend"))
		if err != nil {
			return usageError("%v", err)
		}
		opts.Backend = b
	}
	g, err := gateway.NewGateway(c.Context, cfg, opts)
	if err != nil {
		return err
	}
	addr := cfg.Listen
	if a := c.String("addr"); a != "" {
		addr = a
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		g.Close()
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("gateway serving", "url", gateway.URL(ln.Addr())+"/v1", "models", len(cfg.Models))
	return g.Serve(c.Context, ln)
}
