// Package brokerauth says who may do what on the NATS broker, in one place:
// the identities of Lethe's processes (the coordinator, one worker per
// category, the dashboard and erasectl), the subjects each may publish and
// subscribe to, and the nats-server configuration that enforces it. The
// shipped deploy/nats/auth.conf is rendered from these rules (a test keeps
// it fresh), and the permission test runs an embedded server with the same
// rendered text, so that what is tested is what is deployed.
//
// Identities authenticate with nkeys: the server holds only public keys
// (as variables that each deployment defines, see Keys), every process
// holds its own seed. Each identity reads replies on its own inbox prefix
// only, so that no one can read another's replies: a pulled task is such
// a reply, and a shared inbox would let one worker read another
// category's queue.
package brokerauth

import (
	"fmt"
	"strings"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// Identities that are not workers. A worker's identity is Worker(category).
const (
	Coordinator = "coordinator"
	Dashboard   = "dashboard"
	// Erasectl is the operators' CLI: it asks the workers for footprints
	// and can publish the dashboard's event (as POST /v1/erasures can
	// request an erasure).
	Erasectl = "erasectl"
)

// Worker is the identity of a category's worker replicas.
func Worker(category string) string { return "worker-" + category }

// InboxPrefix is where an identity receives replies (JetStream API
// answers, publish acknowledgements, pulled messages). Clients must set it
// (nats.CustomInboxPrefix); the server lets an identity subscribe to its
// own prefix only.
func InboxPrefix(identity string) string { return "_INBOX." + identity }

// KeyVariable is the nats-server configuration variable that holds an
// identity's public nkey: LETHE_NKEY_WORKER_CONTACTS for worker-contacts.
func KeyVariable(identity string) string {
	return "LETHE_NKEY_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(identity))
}

// User is one identity with its permissions. Everything not allowed is
// denied.
type User struct {
	Identity string
	// Why says what the identity is for, as a comment in the configuration.
	Why       string
	Publish   []string
	Subscribe []string
	// Responds lets the identity publish one reply to a request it
	// received (nats-server's allow_responses), without a publish
	// permission on anyone's inbox.
	Responds bool
}

// jsAPI is the JetStream API prefix of the default domain.
const jsAPI = "$JS.API."

// ackSubjects are the acknowledgement subjects of a durable consumer's
// deliveries: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>....
func ackSubjects(stream, consumer string) string {
	return "$JS.ACK." + stream + "." + consumer + ".>"
}

// streamReader is what reading a stream takes: its info, single messages,
// and ordered (ephemeral, unacknowledged) consumers on it — nothing that
// writes to it, purges it or changes a durable consumer.
func streamReader(stream string) []string {
	return []string{
		jsAPI + "STREAM.INFO." + stream,
		jsAPI + "STREAM.MSG.GET." + stream,
		jsAPI + "DIRECT.GET." + stream + ".>",
		jsAPI + "CONSUMER.CREATE." + stream + ".>",
		jsAPI + "CONSUMER.INFO." + stream + ".*",
		jsAPI + "CONSUMER.MSG.NEXT." + stream + ".*",
		jsAPI + "CONSUMER.DELETE." + stream + ".*",
	}
}

// Users returns the identities and their permissions for the categories.
// The order is the configuration's order.
func Users(categories []string) []User {
	users := []User{{
		Identity: Coordinator,
		Why:      "the coordinator: owns the topology (every JetStream API call), publishes tasks, lifecycle events, dead letters of exhausted tasks and rejected events, and consumes reports, dashboard events and advisories",
		Publish: []string{
			jsAPI + ">",
			erasurev1.TaskSubjectPrefix + ">",
			erasurev1.LifecycleSubjectPrefix + ">",
			erasurev1.DeadLetterSubjectPrefix + ">",
			erasurev1.RejectedIngressSubject,
			ackSubjects(erasurev1.ReportsStream, erasurev1.ReportsConsumer),
			ackSubjects(erasurev1.AccountsStream, erasurev1.IngressConsumer),
			ackSubjects(erasurev1.AdvisoryStream, erasurev1.AdvisoryConsumer),
		},
		Subscribe: []string{InboxPrefix(Coordinator) + ".>"},
	}}
	for _, c := range categories {
		cons := erasurev1.WorkerConsumer(c)
		users = append(users, User{
			Identity: Worker(c),
			Why:      "the " + c + " worker: pulls from its own durable consumer only, publishes its reports and dead letters, answers footprint requests",
			Publish: []string{
				jsAPI + "CONSUMER.INFO." + erasurev1.TasksStream + "." + cons,
				jsAPI + "CONSUMER.MSG.NEXT." + erasurev1.TasksStream + "." + cons,
				ackSubjects(erasurev1.TasksStream, cons),
				erasurev1.ReportSubject(c),
				erasurev1.DeadLetterSubject(c),
			},
			Subscribe: []string{
				InboxPrefix(Worker(c)) + ".>",
				erasurev1.FootprintSubject(c),
			},
			Responds: true,
		})
	}
	users = append(users,
		User{
			Identity:  Dashboard,
			Why:       "the customer dashboard: publishes the account-deletion event, nothing else",
			Publish:   []string{erasurev1.AccountDeletedSubject},
			Subscribe: []string{InboxPrefix(Dashboard) + ".>"},
		},
		User{
			Identity: Erasectl,
			Why:      "erasectl: asks the workers for footprints, can publish the dashboard's event, and reads the lifecycle stream to verify the audit trail (audit verify --key)",
			Publish: append([]string{erasurev1.FootprintSubjectPrefix + "*", erasurev1.AccountDeletedSubject},
				streamReader(erasurev1.LifecycleStream)...),
			Subscribe: []string{InboxPrefix(Erasectl) + ".>"},
		},
	)
	return users
}

// Identities lists the identities of Users(categories), in order.
func Identities(categories []string) []string {
	var out []string
	for _, u := range Users(categories) {
		out = append(out, u.Identity)
	}
	return out
}

// ConfFile is the name of the rendered authorization configuration.
const ConfFile = "auth.conf"

// Header is the first line of a rendered configuration.
const Header = "# Generated by lib/brokerauth (go run ./lib/brokerauth/cmd/lethe-nats-auth conf); do not edit."

// Conf renders the authorization block of nats-server's configuration for
// the categories. Each user's nkey is a variable (KeyVariable) that the
// including configuration, or the server's environment, defines.
func Conf(categories []string) string { return Render(Users(categories)) }

// Render renders the authorization block for users (Conf's users, or
// those plus a test's own).
func Render(users []User) string {
	var b strings.Builder
	b.WriteString(Header + "\n")
	b.WriteString(`#
# Who may do what on the broker (docs/security.md). Include it from the
# server's configuration (include "auth.conf"); it includes nkeys.conf from
# its own directory, which defines each identity's public nkey
# (LETHE_NKEY_COORDINATOR: "U..." and so on) and which lethe-nats-auth keys
# writes together with the seeds. Anything not allowed here is denied; a
# connection without a known key is refused.
include "nkeys.conf"

authorization {
  users: [
`)
	for _, u := range users {
		for _, line := range wrap(u.Why, 92) {
			fmt.Fprintf(&b, "    # %s\n", line)
		}
		fmt.Fprintf(&b, "    {\n      nkey: $%s\n      permissions: {\n", KeyVariable(u.Identity))
		writeList(&b, "publish", u.Publish)
		writeList(&b, "subscribe", u.Subscribe)
		if u.Responds {
			b.WriteString("        allow_responses: { max: 1, expires: \"1m\" }\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

func writeList(b *strings.Builder, what string, subjects []string) {
	fmt.Fprintf(b, "        %s: { allow: [", what)
	for i, s := range subjects {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "%q", s)
	}
	b.WriteString("] }\n")
}

// wrap splits text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
