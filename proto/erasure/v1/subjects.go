package erasurev1

import (
	"fmt"
	"strconv"
)

// Subjects, streams and consumers of the erasure pipeline. They are versioned
// with the wire contract: a breaking change to a message gets a new version
// segment and new streams, so that old and new workers never share a queue.
const (
	// TaskSubjectPrefix is followed by the category: erasure.v1.tasks.contacts.
	TaskSubjectPrefix = "erasure.v1.tasks."
	// SchedulerFenceSubject, in the tasks stream, holds one message per
	// scheduler leadership: every task the leader publishes expects it to
	// be the subject's last, so that a deposed leader's publishes are
	// refused by the stream (see docs/decisions.md, "scheduler lease").
	// No category is named "_fence" (categories are lower-case letters).
	SchedulerFenceSubject = TaskSubjectPrefix + "_fence"
	// ReportSubjectPrefix is followed by the category.
	ReportSubjectPrefix = "erasure.v1.reports."
	// LifecycleSubjectPrefix is followed by the job id.
	LifecycleSubjectPrefix = "erasure.v1.lifecycle."
	// FootprintSubjectPrefix is followed by the category. Plain request-reply,
	// no stream: a footprint is a question, not a record.
	FootprintSubjectPrefix = "erasure.v1.footprint."
	// DeadLetterSubjectPrefix is followed by the category: tasks that failed
	// for good, kept with the reason until an SRE replays or drains them.
	DeadLetterSubjectPrefix = "erasure.v1.dead."
	// MaxDeliveriesAdvisoryPrefix is JetStream's advisory for a message whose
	// deliveries ran out, followed by "<stream>.<consumer>".
	MaxDeliveriesAdvisoryPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."
	// RejectedIngressSubject keeps inbound events that could not be decoded,
	// for inspection.
	RejectedIngressSubject = "erasure.v1.rejected.ingress"

	// AccountDeletedSubject is where the dashboard publishes AccountDeleted.
	AccountDeletedSubject = "accounts.v1.deleted"

	TasksStream      = "ERASURE_V1_TASKS"
	ReportsStream    = "ERASURE_V1_REPORTS"
	LifecycleStream  = "ERASURE_V1_LIFECYCLE"
	RejectedStream   = "ERASURE_V1_REJECTED"
	AccountsStream   = "ACCOUNTS_V1"
	DeadLetterStream = "ERASURE_V1_DEAD_LETTERS"
	// AdvisoryStream captures the tasks consumers' max-deliveries advisories,
	// so that none is missed while no coordinator runs.
	AdvisoryStream = "ERASURE_V1_ADVISORIES"

	// ReportsConsumer is the coordinator replicas' shared durable consumer of
	// reports.
	ReportsConsumer = "coordinator-reports"
	// IngressConsumer is the coordinator replicas' shared durable consumer of
	// the dashboard's AccountDeleted events.
	IngressConsumer = "coordinator-ingress"
	// AdvisoryConsumer is the coordinators' durable consumer of advisories.
	AdvisoryConsumer = "coordinator-advisories"

	// Headers of a dead letter: why, which error class, after how many
	// deliveries, and where the task message was (stream:sequence).
	HeaderDeadReason   = "Lethe-Dead-Reason"
	HeaderDeadCode     = "Lethe-Dead-Code"
	HeaderDeadAttempts = "Lethe-Dead-Attempts"
	HeaderDeadSource   = "Lethe-Dead-Source"

	// HeaderContentType selects the body encoding of AccountDeleted.
	HeaderContentType = "Content-Type"
	// ContentTypeJSON marks a protojson body.
	ContentTypeJSON = "application/json"
	// HeaderRejectReason says why an inbound event was rejected.
	HeaderRejectReason = "Lethe-Reject-Reason"
	// HeaderRejectSource names the stream and sequence of a rejected event.
	HeaderRejectSource = "Lethe-Reject-Source"

	// Headers of a lifecycle event's place in the audit chain (see
	// services/coordinator/audit): its position (the stream sequence it was
	// written at), the id of the key that signed it, its chain link and its
	// MAC, both lower-case hex HMAC-SHA256.
	HeaderAuditSeq  = "Lethe-Audit-Seq"
	HeaderAuditKey  = "Lethe-Audit-Key"
	HeaderAuditLink = "Lethe-Audit-Link"
	HeaderAuditMac  = "Lethe-Audit-Mac"
)

// Categories known to this version of the contract, in the order the
// coordinator lists them.
const (
	CategoryContacts = "contacts"
	CategoryLogs     = "logs"
	CategoryBilling  = "billing"
	CategoryBackups  = "backups"
)

// TaskSubject is the work-queue subject of a category's tasks.
func TaskSubject(category string) string { return TaskSubjectPrefix + category }

// ReportSubject is the subject a category's workers publish reports on.
func ReportSubject(category string) string { return ReportSubjectPrefix + category }

// LifecycleSubject is the subject of one job's lifecycle events.
func LifecycleSubject(jobID string) string { return LifecycleSubjectPrefix + jobID }

// FootprintSubject is the request subject a category's workers answer.
func FootprintSubject(category string) string { return FootprintSubjectPrefix + category }

// DeadLetterSubject is where a category's dead tasks are kept.
func DeadLetterSubject(category string) string { return DeadLetterSubjectPrefix + category }

// DeadLetterMsgID deduplicates the dead letter of one task message.
func DeadLetterMsgID(stream string, seq uint64) string {
	return "dead:" + stream + ":" + strconv.FormatUint(seq, 10)
}

// WorkerConsumer is the durable pull consumer shared by a category's workers.
func WorkerConsumer(category string) string { return "worker-" + category }

// TaskMsgID is the Nats-Msg-Id of a task message: one per job, category,
// stage and dispatch generation, so that re-publishing the same dispatch is
// deduplicated by the stream and a replay (a new generation) is not.
func TaskMsgID(jobID, category, stage string, generation uint32) string {
	return fmt.Sprintf("task:%s:%s:%s:%s", jobID, category, stage, strconv.FormatUint(uint64(generation), 10))
}

// ReportMsgID is the Nats-Msg-Id of a report: one per task dispatch,
// outcome and, for retrying reports, delivery attempt, so that a worker
// re-publishing after a lost ack is deduplicated.
func ReportMsgID(jobID, category, stage string, generation uint32, outcome TaskOutcome, attempt uint32) string {
	if outcome == TaskOutcome_TASK_OUTCOME_RETRYING {
		return fmt.Sprintf("report:%s:%s:%s:%d:%d:%d", jobID, category, stage, generation, outcome, attempt)
	}
	return fmt.Sprintf("report:%s:%s:%s:%d:%d", jobID, category, stage, generation, outcome)
}
