// Package version holds apmkit's version string.
package version

// Version is set at build time with -ldflags "-X github.com/apmkit/apmkit/internal/version.Version=v1.2.3".
// It is a variable, not a constant, because the linker can only set variables.
var Version = "dev"
