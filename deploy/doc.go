// Package deploy holds what runs apmkit where users run it: Kubernetes manifests
// (deploy/kubernetes), a Grafana dashboard (deploy/grafana), and, at the repository's root,
// the Dockerfile. It has no code of its own; its tests check those files against apmkit
// itself: every environment variable a manifest sets is one apmkit reads, every port is
// one it listens on with that configuration, the ConfigMaps load with apmkit's loader, the
// Dockerfile builds the way the Makefile does, and every measurement, field and tag the
// dashboard queries is one apmkit writes.
package deploy
