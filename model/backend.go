package model

import (
	"fmt"
	"os"
	"strings"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/gomlx/backends/default" // registers the Go backend, and XLA where it builds
)

// DefaultBackend is used when neither --backend nor GOMLX_BACKEND names one:
// the pure-Go backend with sequential op scheduling (the parallel scheduler
// deadlocks on 2-core machines).
const DefaultBackend = "go:ops_sequential"

// BackendConfig picks the backend configuration: the explicit one, else
// $GOMLX_BACKEND, else DefaultBackend.
func BackendConfig(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if env := os.Getenv(compute.ConfigEnvVar); env != "" {
		return env
	}
	return DefaultBackend
}

// NewBackend starts a GoMLX backend, e.g. "go:ops_sequential" or
// "xla:/abs/path/xla_cuda_plugin.so"; "" means BackendConfig("").
func NewBackend(config string) (b compute.Backend, err error) {
	config = BackendConfig(config)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("backend %q: %v (available: %s)", config, r, strings.Join(compute.List(), ", "))
		}
	}()
	b, err = compute.NewWithConfig(config)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", config, err)
	}
	return b, nil
}

// DescribeBackend says which backend and device run the model, for logs.
func DescribeBackend(b compute.Backend) string {
	dev := ""
	if b.NumDevices() > 0 {
		dev = b.DeviceDescription(0)
	}
	return fmt.Sprintf("backend %s (%s), %d device(s), device 0: %s", b.Name(), b.Description(), b.NumDevices(), dev)
}
