package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/gateway"
	"github.com/distillery/distillery/model"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve a model behind an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models, /healthz)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "checkpoint folder with tokenizer.json (required)"},
			&cli.StringFlag{Name: "id", Usage: "model id clients send (default: the folder name)"},
			&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer.json or its folder (default: the model folder)"},
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8089", Usage: "listen address (port 0 picks a free port)"},
			&cli.IntFlag{Name: "max-concurrent", Value: gateway.DefaultMaxConcurrent, Usage: "generations running at once"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "compute dtype: f32 or bf16"},
			backendFlag,
		},
		Action: serveAction,
	}
}

func serveAction(c *cli.Context) error {
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
	ln, err := net.Listen("tcp", c.String("addr"))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("serving", "model", id, "url", gateway.URL(ln.Addr())+"/v1", "chat_template", tok.ChatTemplate(), "backend", m.Backend.Name())
	return gateway.ServeListener(c.Context, ln, srv.Handler())
}
