package io

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/apmkit/apmkit/point"
)

// Examples quoted by otlp validation errors.
const (
	exampleOTLPGRPC = "127.0.0.1:4317"
	exampleOTLPHTTP = "http://127.0.0.1:4318"
)

// validateOTLP checks an otlp output: its protocol, an endpoint that protocol can use, the
// categories it takes and its TLS files.
func (o *OutputConfig) validateOTLP(at string) []error {
	var errs []error
	switch o.Protocol {
	case ProtocolGRPC:
		if _, _, err := o.grpcTarget(); err != nil {
			errs = append(errs, fmt.Errorf("%s: endpoint: %w", at, err))
		}
	case ProtocolHTTP:
		errs = appendIf(errs, prefixErr(at, validateHTTPURL("endpoint", o.Endpoint, exampleOTLPHTTP)))
	default:
		errs = append(errs, fmt.Errorf("%s: protocol %q: allowed: %s, %s", at, o.Protocol, ProtocolGRPC, ProtocolHTTP))
	}
	if o.URL != "" {
		errs = append(errs, fmt.Errorf("%s: url: otlp outputs take endpoint instead", at))
	}
	for _, c := range o.Categories {
		if cat, err := point.ParseCategory(c); err == nil && cat != point.Metric && cat != point.Tracing {
			errs = append(errs, fmt.Errorf("%s: categories: %s: otlp outputs take metric and tracing", at, c))
		}
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("%s: tls_cert_file and tls_key_file: set both or neither", at))
	}
	return errs
}

// onlyOTLP refuses otlp's keys on other outputs rather than ignoring them.
func (o *OutputConfig) onlyOTLP(at string) []error {
	var errs []error
	for key, set := range map[string]bool{
		"endpoint": o.Endpoint != "", "protocol": o.Protocol != "", "insecure": o.Insecure,
		"tls_ca_file": o.TLSCAFile != "", "tls_cert_file": o.TLSCertFile != "", "tls_key_file": o.TLSKeyFile != "",
		"tls_insecure_skip_verify": o.TLSSkipVerify,
	} {
		if set {
			errs = append(errs, fmt.Errorf("%s: %s: only otlp outputs take it", at, key))
		}
	}
	return sortedErrors(errs)
}

// sortedErrors orders errors by text, so a map walk gives stable messages.
func sortedErrors(errs []error) []error {
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}

// grpcTarget is the gRPC endpoint as host:port and whether it is plaintext: host:port
// (TLS unless insecure), http://host:port (plaintext) or https://host:port (TLS), the
// forms OTEL_EXPORTER_OTLP_ENDPOINT takes.
func (o *OutputConfig) grpcTarget() (target string, plaintext bool, err error) {
	ep := o.Endpoint
	if ep == "" {
		return "", false, fmt.Errorf("required, e.g. %s", exampleOTLPGRPC)
	}
	plaintext = o.Insecure
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", false, fmt.Errorf("not host:port nor http(s)://host:port, e.g. %s", exampleOTLPGRPC)
		}
		ep, plaintext = u.Host, o.Insecure || u.Scheme == "http"
	}
	if _, port, err := net.SplitHostPort(ep); err != nil || port == "" {
		return "", false, fmt.Errorf("not host:port, e.g. %s", exampleOTLPGRPC)
	}
	return ep, plaintext, nil
}

// tlsConfig is the client TLS of an otlp output: the CA and client certificate files.
func (o *OutputConfig) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.TLSSkipVerify} //nolint:gosec // the user's explicit choice
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("tls_ca_file: no PEM certificate in it")
		}
	}
	if o.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls_cert_file, tls_key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
