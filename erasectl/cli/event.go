package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountsv1 "github.com/lethe-privacy/lethe/proto/accounts/v1"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

var eventSpec = commandSpec{
	name:    "event",
	summary: "publish the dashboard's account-deletion event, as the dashboard does",
	usage:   "event ACCOUNT_ID [--event-id ID] [--requested-by WHO] [--reason WHY] [--json]",
	description: `
Publishes an AccountDeleted event on accounts.v1.deleted to JetStream, exactly
as the customer dashboard does when a customer deletes their account, and
prints the stream sequence it was stored at. The coordinator turns it into a
job; follow it with 'erasectl list --account ACCOUNT_ID'.

The event id defaults to a fresh one; publishing the same --event-id again
maps to the same job. With --json the body is protojson with the header
Content-Type: application/json instead of protobuf.`,
	examples: `  erasectl event demo-0001
  erasectl event demo-0001 --event-id evt-42 --requested-by customer:demo-0001 --json`,
	globals: flagNATSURL,
	new:     func() command { return &eventCmd{requestedBy: "dashboard", reason: "account deleted in the dashboard"} },
}

type eventCmd struct {
	accountID   string
	eventID     string
	requestedBy string
	reason      string
	asJSON      bool
}

func (c *eventCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.eventID, "event-id", c.eventID, "the event's `ID` (default: a new one)")
	fs.StringVar(&c.requestedBy, "requested-by", c.requestedBy, "`WHO` deleted the account: a principal id")
	fs.StringVar(&c.reason, "reason", c.reason, "`WHY`, without personal data")
	fs.BoolVar(&c.asJSON, "json", c.asJSON, "send protojson with Content-Type: application/json")
}

func (c *eventCmd) args(pos []string) error {
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one ACCOUNT_ID, got %d arguments", len(pos))
	}
	c.accountID = pos[0]
	if err := validateID("account id", c.accountID); err != nil {
		return err
	}
	if c.requestedBy == "" {
		return errors.New("--requested-by must not be empty")
	}
	return nil
}

type eventResult struct {
	EventID   string `json:"event_id"`
	AccountID string `json:"account_id"`
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"sequence"`
	Duplicate bool   `json:"duplicate"`
}

func (c *eventCmd) run(ctx context.Context, p *program) error {
	if c.eventID == "" {
		c.eventID = fmt.Sprintf("erasectl-%d", time.Now().UnixNano())
	}
	ev := &accountsv1.AccountDeleted{
		EventId: c.eventID, AccountId: c.accountID, DeletedAt: timestamppb.Now(),
		RequestedBy: c.requestedBy, Reason: c.reason,
	}
	m := nats.NewMsg(erasurev1.AccountDeletedSubject)
	var err error
	if c.asJSON {
		m.Data, err = protojson.Marshal(ev)
		m.Header.Set(erasurev1.HeaderContentType, erasurev1.ContentTypeJSON)
	} else {
		m.Data, err = proto.Marshal(ev)
	}
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	// The dashboard sets the event id as the message id too, so that its
	// own retries are deduplicated by the stream.
	m.Header.Set(jetstream.MsgIDHeader, "account-deleted:"+c.eventID)

	nc, err := p.cfg.connectNATS()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("create jetstream context: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, m)
	if err != nil {
		return withCode(ExitUnavailable, fmt.Errorf(
			"publish to %s (%v): is the coordinator's stream there? start the coordinator once, or check %s",
			erasurev1.AccountDeletedSubject, err, EnvNATSURL))
	}
	res := eventResult{EventID: c.eventID, AccountID: c.accountID, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}
	if p.cfg.json() {
		return writeJSON(p.stdout, res)
	}
	t := newTable("EVENT", "ACCOUNT", "STREAM", "SEQUENCE", "DUPLICATE")
	t.add(res.EventID, res.AccountID, res.Stream, fmt.Sprint(res.Sequence), fmt.Sprint(res.Duplicate))
	return t.write(p.stdout)
}
