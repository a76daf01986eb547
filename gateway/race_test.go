//go:build race

package gateway

const raceBuild = true
