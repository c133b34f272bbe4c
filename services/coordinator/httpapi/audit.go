package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/audit"
)

// AuditVerifier walks the lifecycle stream's audit chain.
type AuditVerifier interface {
	// Verify checks from stream sequence fromSeq (0: the start), at most
	// limit entries (0: all), calling progress now and then. It returns an
	// error only when the stream cannot be read.
	Verify(ctx context.Context, fromSeq, limit uint64, progress func(audit.Progress)) (audit.Report, error)
}

var _ AuditVerifier = (*audit.Walker)(nil)

// MaxAuditTime bounds how long GET /v1/audit/verify may take to answer;
// the server's usual write timeout is far shorter than a walk of a long
// trail.
const MaxAuditTime = 2 * time.Hour

func (s *server) auditRoutes(mux *http.ServeMux) {
	if s.opts.Audit == nil {
		return
	}
	// One walk at a time per coordinator: a walk reads the whole stream.
	busy := make(chan struct{}, 1)
	s.route(mux, "GET /v1/audit/verify", func(w http.ResponseWriter, r *http.Request) {
		select {
		case busy <- struct{}{}:
			defer func() { <-busy }()
			s.auditVerify(w, r)
		default:
			writeError(w, http.StatusConflict, apiv1.CodeConflict, "an audit verification is already running on this coordinator; wait for it to finish")
		}
	})
}

// auditVerify walks the chain and answers with the report: as one JSON
// document, or, when the client accepts application/x-ndjson, as progress
// lines followed by the report line. A walk stops when the client goes
// away.
func (s *server) auditVerify(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "from_seq" && k != "limit" {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, fmt.Sprintf("unknown query parameter %q; use from_seq, limit", k))
			return
		}
	}
	from, err := uintParam(q.Get("from_seq"), "from_seq")
	if err != nil {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, err.Error())
		return
	}
	limit, err := uintParam(q.Get("limit"), "limit")
	if err != nil {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, err.Error())
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Now().Add(MaxAuditTime)); err != nil {
		s.log.Warn("cannot extend the write deadline for an audit walk", zap.Error(err))
	}
	stream := acceptsNDJSON(r)
	var enc *json.Encoder
	progress := func(audit.Progress) {}
	if stream {
		w.Header().Set("Content-Type", apiv1.MediaTypeNDJSON)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		enc = json.NewEncoder(w)
		progress = func(p audit.Progress) {
			_ = enc.Encode(apiv1.AuditLine{Progress: &apiv1.AuditProgress{Checked: p.Checked, Seq: p.Seq, LastSeq: p.LastSeq, Problems: p.Problems}})
			_ = rc.Flush()
		}
	}
	start := time.Now()
	rep, err := s.opts.Audit.Verify(r.Context(), from, limit, progress)
	if err != nil {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the client went away
		}
		s.log.Error("audit walk failed", zap.Error(err), zap.Uint64("checked", rep.Checked), zap.Uint64("stream_seq", rep.LastSeq))
		const msg = "the coordinator could not read the lifecycle stream; retry, or go on from next_seq with ?from_seq="
		if stream {
			_ = enc.Encode(apiv1.AuditLine{Error: &apiv1.ErrorDetail{Code: apiv1.CodeUnavailable, Message: fmt.Sprintf("%s (stopped after stream sequence %d)", msg, rep.LastSeq)}})
			return
		}
		writeError(w, http.StatusServiceUnavailable, apiv1.CodeUnavailable, msg)
		return
	}
	out := AuditReportView(rep)
	out.DurationSeconds = time.Since(start).Seconds()
	if !rep.OK {
		first, _ := rep.FirstProblem()
		s.log.Warn("audit trail does not verify", zap.String("kind", string(first.Kind)), zap.Uint64("stream_seq", first.StreamSeq), zap.Uint64("problems", rep.ProblemCount))
	}
	if stream {
		_ = enc.Encode(apiv1.AuditLine{Report: &out})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// AuditReportView is the API's form of an audit report (erasectl's local
// walk prints the same).
func AuditReportView(r audit.Report) apiv1.AuditReport {
	out := apiv1.AuditReport{
		Stream: r.Stream, OK: r.OK, Checked: r.Checked, FirstSeq: r.FirstSeq, LastSeq: r.LastSeq, Verified: r.Verified,
		UnsignedBeforeFirstSigned: r.UnsignedBefore, Complete: r.Complete, NextSeq: r.NextSeq, ProblemCount: r.ProblemCount,
	}
	for _, k := range r.Keys {
		out.Keys = append(out.Keys, apiv1.AuditKeyUse{ID: k.ID, FirstSeq: k.FirstSeq, Entries: k.Entries, Known: k.Known})
	}
	if r.Head != nil {
		out.Head = &apiv1.AuditHead{Seq: r.Head.Seq, StreamSeq: r.Head.StreamSeq, Link: r.Head.Link, KeyID: r.Head.KeyID}
	}
	for _, p := range r.Problems {
		out.Problems = append(out.Problems, apiv1.AuditProblem{
			Kind: string(p.Kind), Seq: p.Seq, StreamSeq: p.StreamSeq, Subject: p.Subject, EventID: p.EventID,
			MissingFrom: p.MissingFrom, MissingTo: p.MissingTo, Message: p.Message,
		})
	}
	return out
}

// acceptsNDJSON reports whether the client asked for progress lines.
func acceptsNDJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == apiv1.MediaTypeNDJSON {
			return true
		}
	}
	return false
}

func uintParam(v, name string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s must be a whole number of 0 or more", name)
	}
	return n, nil
}
