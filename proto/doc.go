// Package proto holds Lethe's wire contract: the .proto files under
// accounts/v1 and erasure/v1, the Go generated from them, and the subject,
// stream and consumer names beside the messages they carry. Regenerate with
// scripts/gen-proto; CI fails when the committed Go is stale.
package proto
