// Package httpapi is the coordinator's HTTP port: the JSON API under
// /v1/erasures, health and readiness probes and metrics. The request and
// response shapes in types.go are shared with erasectl.
package httpapi
