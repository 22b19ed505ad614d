// Package validate checks the operator files under deploy/ (the Dockerfile, docker-compose.yml,
// the Kubernetes manifests, the Prometheus rules and the Grafana dashboard) against the
// binaries they deploy. It is its own module so that the parsers it needs (BuildKit,
// compose-go, k8s.io/api) stay out of the binaries' dependencies.
package validate
