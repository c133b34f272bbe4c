// Package e2e holds the end-to-end tests of the whole pipeline: a real
// NATS server with JetStream (embedded), the real Redis and PostgreSQL, the
// coordinator and the contacts worker as they run in production, and the
// dashboard's event and the HTTP API as the ways in.
package e2e
