// Package httpapi is the coordinator's HTTP port: the JSON API under
// /v1/erasures (shapes in package apiv1), health and readiness probes and
// metrics.
package httpapi
