package lifecycle

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
)

// ChainPublisher is what a recorder that signs the audit chain needs of
// JetStream: publishes (synchronous, and asynchronous to keep two in
// flight on a single server), the connection (atomic batches are plain
// NATS messages with batch headers), and the stream, to read its last
// message when another writer got in between. jetstream.JetStream is one.
type ChainPublisher interface {
	Publisher
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
	Conn() *nats.Conn
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

var _ ChainPublisher = (jetstream.JetStream)(nil)

// Option configures a Recorder.
type Option func(*Recorder)

// WithAuditKey makes the recorder sign every event into the audit chain
// with key (see package audit). Its publisher must be a ChainPublisher
// (jetstream.JetStream is); otherwise Record fails. A recorder without a
// key writes unsigned events, which `erasectl audit verify` reports: it is
// for tests and tools, the coordinator always has a key (-audit-key).
func WithAuditKey(key *audit.Key) Option {
	return func(r *Recorder) { r.key = key }
}

// WithStream names the stream the events land in (default the lifecycle
// stream): the signed recorder reads its last message to continue the
// chain.
func WithStream(name string) Option {
	return func(r *Recorder) { r.stream = name }
}

// WithMaxBatch bounds how many waiting events a signed recorder publishes
// in one atomic batch (default 256; nats-server takes at most 1000).
func WithMaxBatch(n int) Option {
	return func(r *Recorder) {
		if n > 0 {
			r.maxBatch = min(n, maxBatchLimit)
		}
	}
}

// Tuning of the signed recorder.
const (
	defaultMaxBatch = 256
	// maxBatchLimit is nats-server's default largest atomic batch.
	maxBatchLimit = 1000
	// ackWait bounds the wait for one ack or one read of the stream.
	ackWait = 5 * time.Second
	// hardRetries is how often a batch is retried after errors that are
	// not a lost race (the broker unreachable, a timeout), as Record did
	// before the chain.
	hardRetries = 5
	// maxConflicts is how many races a batch may lose in a row before it
	// gives up; with two busy writers a handful is usual.
	maxConflicts = 1000
	// pipelineDepth is how many events of a batch are in flight at once
	// when they go without an atomic batch. Two is the most that cannot
	// fork the chain: an event is sent only once the event two before it
	// is known to be stored where it was signed for (sendPipelined).
	pipelineDepth = 2
)

// ChainStats count what a signed recorder did, for benchmarks and tests.
type ChainStats struct {
	// Stored events, appended to the chain by this recorder; Duplicates
	// were already in the stream (same event id within the duplicate
	// window) and did not move the chain.
	Stored, Duplicates uint64
	// Batches taken from the queue, Conflicts (events refused because
	// another writer had appended first) and Resyncs (reads of the
	// stream's last message).
	Batches, Conflicts, Resyncs uint64
}

// chain is the signed recorder's writer. Events wait in a queue; whoever
// holds the turn publishes every waiting event (up to maxBatch), each
// signed for the position it will get and expecting the stream's last
// message to be the one before it, and the others find theirs done. On a
// cluster the batch goes as one atomic batch (one consensus round instead
// of one per event); on a single server pipelined, two in flight
// (sendPipelined). Either way the chain stays strictly serial. See
// docs/jetstream.md, "The audit chain".
type chain struct {
	js       ChainPublisher
	key      *audit.Key
	stream   string
	maxBatch int

	mu    sync.Mutex
	queue []*pending

	// turn is held by the one goroutine publishing.
	turn chan struct{}
	// Owned by the turn's holder:
	handle jetstream.Stream
	tail   tail
	synced bool
	// noAtomic: events go without atomic batches, pipelined, on a
	// single server (faster there) or when the stream takes no atomic
	// batches (not allowed on it, an older nats-server).
	noAtomic bool

	stored, duplicates, batches, conflicts, resyncs atomic.Uint64
}

// tail is the last message of the stream as the writer believes it.
type tail struct {
	seq  uint64
	link audit.Sum
	id   string
}

// pending is one Record call waiting for its event to be stored.
type pending struct {
	ctx     context.Context
	subject string
	id      string
	data    []byte
	done    chan error // receives exactly once
	settled atomic.Bool
}

func (p *pending) finish(err error) {
	if p.settled.CompareAndSwap(false, true) {
		p.done <- err
	}
}

func newChain(js Publisher, key *audit.Key, stream string, maxBatch int) *chain {
	cp, _ := js.(ChainPublisher)
	return &chain{js: cp, key: key, stream: stream, maxBatch: maxBatch, turn: make(chan struct{}, 1)}
}

// errNoChainPublisher: WithAuditKey on a publisher that is not a ChainPublisher.
var errNoChainPublisher = errors.New("the recorder has an audit key but its publisher cannot append to the chain (give it a jetstream.JetStream)")

// record appends one event and returns once the stream stored it (or
// already held it), or with the error that stopped it.
func (c *chain) record(ctx context.Context, subject, id string, data []byte) error {
	if c.js == nil {
		return errNoChainPublisher
	}
	p := &pending{ctx: ctx, subject: subject, id: id, data: data, done: make(chan error, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	c.mu.Unlock()
	for {
		select {
		case err := <-p.done:
			return err
		case c.turn <- struct{}{}:
			c.flushUntil(ctx, p)
			<-c.turn
		case <-ctx.Done():
			// Left in the queue, the event is dropped by the next batch,
			// unless one is publishing it: then it may still be stored,
			// as a publish whose ack was lost would be.
			return ctx.Err()
		}
	}
}

// flushUntil publishes batches until p is settled, or until ctx (p's
// caller's) ends: then what is left goes back to the front of the queue
// for the next caller to publish.
func (c *chain) flushUntil(ctx context.Context, p *pending) {
	for !p.settled.Load() && ctx.Err() == nil {
		c.mu.Lock()
		n := min(len(c.queue), c.maxBatch)
		batch := c.queue[:n:n]
		c.queue = c.queue[n:]
		c.mu.Unlock()
		if n == 0 {
			return // settled by a batch that ended meanwhile
		}
		c.publish(ctx, batch)
	}
}

// requeue puts ps back at the front of the queue, in order.
func (c *chain) requeue(ps []*pending) {
	if len(ps) == 0 {
		return
	}
	c.mu.Lock()
	c.queue = append(slices.Clip(ps), c.queue...)
	c.mu.Unlock()
}

// publish stores batch in order, retrying what a race or an error left.
// When ctx ends it hands what is left back to the queue.
func (c *chain) publish(ctx context.Context, batch []*pending) {
	c.batches.Add(1)
	remaining := live(batch)
	var hard, conflicts int
	for len(remaining) > 0 {
		var conflicted bool
		var err error
		if !c.synced {
			err = c.resync(ctx)
		}
		if err == nil {
			remaining, conflicted, err = c.send(ctx, remaining)
			remaining = live(remaining)
		}
		switch {
		case len(remaining) == 0:
			return
		case ctx.Err() != nil:
			c.requeue(remaining)
			return
		case err == nil && !conflicted:
			continue // the rest of a batch cut short (an event without id)
		case err == nil:
			if conflicts++; conflicts <= maxConflicts {
				// Two writers that keep colliding step out of phase.
				if conflicts > 2 {
					sleep(ctx, time.Duration(rand.Int64N(int64(min(conflicts, 20))*int64(100*time.Microsecond))))
				}
				continue
			}
			err = fmt.Errorf("append to the audit chain: another writer got in first %d times in a row", maxConflicts)
			hard = hardRetries
		}
		if hard++; hard > hardRetries {
			for _, p := range remaining {
				p.finish(err)
			}
			return
		}
		sleep(ctx, 50*time.Millisecond<<(hard-1))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// live drops the events whose callers gave up.
func live(ps []*pending) []*pending {
	out := ps[:0:0]
	for _, p := range ps {
		if err := p.ctx.Err(); err != nil {
			p.finish(err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// send appends ps after the tail: as one atomic batch when there are
// several, else (or when the stream takes no batches) pipelined; a single
// event with one synchronous publish. It settles what was stored and
// returns the rest in order, whether a lost race left them, and the error
// of any other failure.
func (c *chain) send(ctx context.Context, ps []*pending) (retry []*pending, conflicted bool, err error) {
	// One event id twice in a batch would fail it as a whole: the second
	// goes with the next batch and comes back as a duplicate there.
	seen := make(map[string]struct{}, len(ps))
	for i, p := range ps {
		if _, dup := seen[p.id]; dup {
			retry = ps[i:]
			ps = ps[:i]
			break
		}
		seen[p.id] = struct{}{}
	}
	var rest []*pending
	switch {
	case len(ps) > 1 && !c.noAtomic:
		rest, conflicted, err = c.sendAtomic(ctx, ps)
	case len(ps) > 1:
		rest, conflicted, err = c.sendPipelined(ctx, ps)
	default:
		rest, conflicted, err = c.sendSerial(ctx, ps)
	}
	return append(rest, retry...), conflicted, err
}

// Headers of JetStream's atomic batch publish (nats-server 2.12 and later).
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// JetStream error codes the writer acts on (nats.go names no constants
// for them).
const (
	errCodeAtomicDisabled    jetstream.ErrorCode = 10174
	errCodeAtomicUnsupported jetstream.ErrorCode = 10177
	errCodeAtomicDuplicate   jetstream.ErrorCode = 10201
	// errCodeWrongLastMsgID: the stream's last message is not the event
	// expected before this one (Nats-Expected-Last-Msg-Id).
	errCodeWrongLastMsgID jetstream.ErrorCode = 10070
)

// batchAck is the answer to an atomic batch's commit.
type batchAck struct {
	Stream string              `json:"stream"`
	Seq    uint64              `json:"seq"`
	Count  int                 `json:"count"`
	Error  *jetstream.APIError `json:"error"`
}

// sendAtomic publishes ps as one atomic batch whose first message expects
// the tail to be the stream's last: the stream stores all of them, at the
// positions they were signed for, or none. Per-message expectations would
// not do: a later message's expectation can hold for another writer's copy
// of the same event while its own predecessor was refused, and it would be
// stored chained to entries that are not in the stream (decisions.md).
func (c *chain) sendAtomic(ctx context.Context, ps []*pending) (retry []*pending, conflicted bool, err error) {
	nc := c.js.Conn()
	id, err := batchID()
	if err != nil {
		return ps, false, err
	}
	t := c.tail
	var last *nats.Msg
	var lastLink audit.Sum
	for i, p := range ps {
		seal := audit.Sign(c.key, t.link, t.seq+1, p.subject, p.id, p.data)
		m := nats.NewMsg(p.subject)
		m.Data = p.data
		m.Header.Set(jetstream.MsgIDHeader, p.id)
		audit.SetSeal(m.Header, seal)
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(c.tail.seq, 10))
		}
		t = tail{seq: seal.Seq, link: seal.Link, id: p.id}
		if i == len(ps)-1 {
			m.Header.Set(hdrBatchCommit, "1")
			last, lastLink = m, seal.Link
			break
		}
		if err := nc.PublishMsg(m); err != nil {
			c.synced = false
			return ps, false, fmt.Errorf("append to the audit chain: %w", err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, ackWait)
	defer cancel()
	resp, err := nc.RequestMsgWithContext(rctx, last)
	if err != nil {
		// Stored or not: sent again, the batch is a duplicate or it is new.
		c.synced = false
		return ps, false, fmt.Errorf("append to the audit chain: %w", err)
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		c.synced = false
		return ps, false, fmt.Errorf("append to the audit chain: undecodable answer: %w", err)
	}
	if ack.Error != nil {
		switch ack.Error.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			c.conflicts.Add(uint64(len(ps)))
			c.synced = false
			return ps, true, nil
		case errCodeAtomicDuplicate:
			// An event of the batch is in the stream already: one at a
			// time, the stream answers which.
			return c.sendSerial(ctx, ps)
		case errCodeAtomicDisabled, errCodeAtomicUnsupported:
			c.noAtomic = true
			return c.sendSerial(ctx, ps)
		}
		c.synced = false
		return ps, false, fmt.Errorf("append to the audit chain: %w", ack.Error)
	}
	if ack.Seq != t.seq || ack.Count != len(ps) {
		// Not what was sent; the chain as stored is read back.
		c.synced = false
	} else {
		c.tail = tail{seq: ack.Seq, link: lastLink, id: t.id}
	}
	for _, p := range ps {
		p.finish(nil)
	}
	c.stored.Add(uint64(len(ps)))
	return nil, false, nil
}

// sendSerial publishes ps one after the other, each expecting the one
// before it to be the stream's last.
func (c *chain) sendSerial(ctx context.Context, ps []*pending) (retry []*pending, conflicted bool, err error) {
	for i, p := range ps {
		seal := audit.Sign(c.key, c.tail.link, c.tail.seq+1, p.subject, p.id, p.data)
		m := nats.NewMsg(p.subject)
		m.Data = p.data
		m.Header.Set(jetstream.MsgIDHeader, p.id)
		audit.SetSeal(m.Header, seal)
		pctx, cancel := context.WithTimeout(ctx, ackWait)
		ack, err := c.js.PublishMsg(pctx, m, jetstream.WithExpectLastSequence(c.tail.seq))
		cancel()
		switch {
		case err == nil && !ack.Duplicate:
			p.finish(nil)
			c.stored.Add(1)
			if ack.Sequence != seal.Seq {
				c.synced = false
				return ps[i+1:], false, nil
			}
			c.tail = tail{seq: ack.Sequence, link: seal.Link, id: p.id}
		case err == nil:
			// Stored before, by this or another coordinator: the chain
			// did not move for it.
			p.finish(nil)
			c.duplicates.Add(1)
			if ack.Sequence > c.tail.seq {
				c.synced = false
				return ps[i+1:], false, nil
			}
		case isConflict(err):
			c.conflicts.Add(1)
			c.synced = false
			return ps[i:], true, nil
		default:
			c.synced = false
			return ps[i:], false, fmt.Errorf("append to the audit chain: %w", err)
		}
	}
	return nil, false, nil
}

// inFlight is one event of sendPipelined waiting for its ack.
type inFlight struct {
	p    *pending
	seal audit.Seal
	fut  jetstream.PubAckFuture
	// chained: sent while its predecessor in the batch was still in
	// flight, so a refusal may be the consequence of the predecessor's
	// fate rather than another writer.
	chained bool
}

// sendPipelined publishes ps in order with up to pipelineDepth of them in
// flight, each signed for the position after the one before it and
// expecting the stream's last message to be that one: its sequence and,
// while that one is in flight, its event id. It settles what was stored
// and returns the rest in order, whether a lost race left them, and the
// error of any other failure.
//
// Why two and no more: when an event is accepted, the stream's last
// message has the expected position and event id. It is this writer's
// copy, or another writer's copy of the same event, which that writer
// chained to the message then before it. Either way the link fits as long
// as the message before *that* is the one this writer signed against,
// which holds when the event two back is known stored (or is the tail read
// from the stream). With three in flight, two refused events followed by
// an accepted one can chain to entries that are not in the stream
// (TestBatchAfterAnotherWritersSameEventDoesNotFork). Neither per-message
// expectations nor nats-server's fast batches (which skip duplicates
// without checking them) rule that out for deeper pipelines.
func (c *chain) sendPipelined(ctx context.Context, ps []*pending) (retry []*pending, conflicted bool, err error) {
	var (
		window []inFlight
		next   int      // first event of ps not sent yet
		sent   = c.tail // the tail as it will be once everything in flight is stored
		broken bool     // an event did not land where it was signed for: send no more
		timer  *time.Timer
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		for !broken && next < len(ps) && len(window) < pipelineDepth {
			p := ps[next]
			chained := len(window) > 0
			if chained && sent.id == "" {
				break // nothing to check the predecessor by: wait for its ack
			}
			seal := audit.Sign(c.key, sent.link, sent.seq+1, p.subject, p.id, p.data)
			m := nats.NewMsg(p.subject)
			m.Data = p.data
			m.Header.Set(jetstream.MsgIDHeader, p.id)
			audit.SetSeal(m.Header, seal)
			opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequence(sent.seq)}
			if chained {
				opts = append(opts, jetstream.WithExpectLastMsgID(sent.id))
			}
			fut, perr := c.js.PublishMsgAsync(m, opts...)
			if perr != nil {
				c.synced = false
				err = fmt.Errorf("append to the audit chain: %w", perr)
				broken = true
				break
			}
			window = append(window, inFlight{p: p, seal: seal, fut: fut, chained: chained})
			sent = tail{seq: seal.Seq, link: seal.Link, id: p.id}
			next++
		}
		if len(window) == 0 {
			break
		}
		f := window[0]
		window = window[1:]
		if timer == nil {
			timer = time.NewTimer(ackWait)
		} else {
			timer.Reset(ackWait)
		}
		var ack *jetstream.PubAck
		var aerr error
		select {
		case ack = <-f.fut.Ok():
		case aerr = <-f.fut.Err():
		case <-ctx.Done():
			aerr = ctx.Err()
		case <-timer.C:
			aerr = fmt.Errorf("no ack within %s", ackWait)
		}
		switch {
		case aerr == nil && !ack.Duplicate:
			f.p.finish(nil)
			c.stored.Add(1)
			if broken || ack.Sequence != f.seal.Seq {
				// Stored, but what came before it in this batch did not
				// go as sent (then the expectations put it where it was
				// signed for, after another writer's copy of its
				// predecessor), or not where it was signed for: read the
				// tail back.
				c.synced = false
				broken = true
				continue
			}
			c.tail = tail{seq: ack.Sequence, link: f.seal.Link, id: f.p.id}
		case aerr == nil:
			// Stored before, by this or another coordinator: the chain did
			// not move for it, and the event after it, signed against it,
			// will be refused.
			f.p.finish(nil)
			c.duplicates.Add(1)
			if ack.Sequence > c.tail.seq {
				c.synced = false
			}
			broken = true
		case isConflict(aerr) || isWrongLastMsgID(aerr):
			if !f.chained || !broken {
				// Its predecessor was stored as sent (or is the tail read
				// back), so another writer got in first.
				c.conflicts.Add(1)
				conflicted = true
				c.synced = false
			}
			broken = true
		default:
			// Stored or not: sent again, it is a duplicate or it is new.
			c.synced = false
			if err == nil {
				err = fmt.Errorf("append to the audit chain: %w", aerr)
			}
			broken = true
		}
	}
	for _, p := range ps {
		if !p.settled.Load() {
			retry = append(retry, p)
		}
	}
	return retry, conflicted, err
}

// batchID names an atomic batch: 64 random bits, in every stored message
// of the batch, so short; unique among the batches in flight is enough.
func batchID() (string, error) {
	b := make([]byte, 8)
	if _, err := crand.Read(b); err != nil {
		return "", fmt.Errorf("make an audit batch id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// resync reads the stream's last message: the tail to chain from.
func (c *chain) resync(ctx context.Context) error {
	c.resyncs.Add(1)
	ctx, cancel := context.WithTimeout(ctx, ackWait)
	defer cancel()
	if c.handle == nil {
		h, err := c.js.Stream(ctx, c.stream)
		if err != nil {
			return fmt.Errorf("look up stream %s to continue the audit chain: %w", c.stream, err)
		}
		c.handle = h
		// A single server stages an atomic batch in a new fsync'ed file
		// store per batch, slower than publishing the events pipelined
		// over its short round trip; a cluster stages in memory and
		// commits the batch in one proposal, where one at a time pays a
		// consensus round per event (measured: docs/benchmarks.md).
		if info := h.CachedInfo(); info != nil {
			c.noAtomic = !info.Config.AllowAtomicPublish || info.Config.Replicas < 2
		}
	}
	for {
		msg, err := c.handle.GetLastMsgForSubject(ctx, ">")
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			info, err := c.handle.Info(ctx)
			if err != nil {
				return fmt.Errorf("read the state of stream %s to continue the audit chain: %w", c.stream, err)
			}
			if info.State.Msgs > 0 {
				// Another writer appended the first message between the
				// two reads: its link is what the next entry chains from.
				continue
			}
			// Nothing to chain from: the next entry starts from Genesis,
			// at the stream's next sequence.
			c.tail = tail{seq: info.State.LastSeq}
		case err != nil:
			return fmt.Errorf("read the last message of stream %s to continue the audit chain: %w", c.stream, err)
		default:
			c.tail = tail{seq: msg.Sequence, link: audit.ChainLink(msg.Header), id: msg.Header.Get(jetstream.MsgIDHeader)}
		}
		c.synced = true
		return nil
	}
}

// isConflict reports whether err is the stream refusing a publish because
// its last message is not the one expected: another writer got in first.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
		return true
	}
	return false
}

// isWrongLastMsgID reports whether err is the stream refusing a publish
// because its last message is not the event expected before it: the one
// before it in flight was not stored, or another writer got in first.
func isWrongLastMsgID(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeWrongLastMsgID
}

func (c *chain) stats() ChainStats {
	return ChainStats{
		Stored: c.stored.Load(), Duplicates: c.duplicates.Load(),
		Batches: c.batches.Load(), Conflicts: c.conflicts.Load(), Resyncs: c.resyncs.Load(),
	}
}

// defaultStream is where lifecycle events land.
const defaultStream = erasurev1.LifecycleStream
