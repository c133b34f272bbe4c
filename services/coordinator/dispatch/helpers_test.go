package dispatch_test

import (
	"github.com/nats-io/nats.go/jetstream"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// jetstreamSubjects asks stream info for per-subject counts of the tasks
// stream.
func jetstreamSubjects() jetstream.StreamInfoOpt {
	return jetstream.WithSubjectFilter(erasurev1.TaskSubjectPrefix + ">")
}
