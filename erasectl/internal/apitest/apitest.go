// Package apitest serves the coordinator's documented HTTP API from memory,
// for tests of erasectl's client and commands. It is our own contract
// (services/coordinator/apiv1), not a stand-in for a broker: jobs are
// created idempotently per account (202 when created, 200 when the active
// job is returned), have UUID ids, are listed newest first in pages, and
// every error is the documented error body, unknown endpoints included.
// Tests move jobs along with SetAdvance.
package apitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// Epoch is the created_at of the first job; each later job is a minute
// younger, so that output is the same on every run.
var Epoch = time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)

// Server is an in-memory coordinator API on a random loopback port.
type Server struct {
	*httptest.Server

	mu      sync.Mutex
	jobs    []*apiv1.Job // in creation order
	advance func(*apiv1.Job)
	gets    int
}

// New starts a server that is closed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/erasures", s.create)
	mux.HandleFunc("GET /v1/erasures", s.list)
	mux.HandleFunc("GET /v1/erasures/{id}", s.get)
	mux.HandleFunc("/v1/erasures", methodNotAllowed)
	mux.HandleFunc("/v1/erasures/{id}", methodNotAllowed)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, apiv1.CodeNotFound, "no such endpoint")
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// SetAdvance makes every GET of a job call fn on it first, under the
// server's lock, as the pipeline would move it along between two polls.
func (s *Server) SetAdvance(fn func(*apiv1.Job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance = fn
}

// AddJob stores a job as if it had been created, with the next creation time
// when its CreatedAt is zero.
func (s *Server) AddJob(j apiv1.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.CreatedAt.IsZero() {
		j.CreatedAt = Epoch.Add(time.Duration(len(s.jobs)) * time.Minute)
		j.UpdatedAt = j.CreatedAt
		j.Deadline = j.CreatedAt.AddDate(0, 1, 0)
	}
	s.jobs = append(s.jobs, &j)
}

// Gets counts the GET requests of single jobs so far.
func (s *Server) Gets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

// JobID is the id of the n-th job this server creates, a UUID.
func JobID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// NewTasks are the tasks of a job this server creates.
func NewTasks() []apiv1.Task {
	return []apiv1.Task{
		{Category: "contacts", Stage: "erase", Action: "delete", Status: apiv1.TaskScheduled, Generation: 1},
		{Category: "logs", Stage: "erase", Action: "delete", Status: apiv1.TaskScheduled, Generation: 1},
	}
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var req apiv1.CreateErasureRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "body is not a CreateErasureRequest")
		return
	}
	switch {
	case req.AccountID == "":
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "account_id is required")
		return
	case req.RequestedBy == "":
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "requested_by is required")
		return
	case req.Reason == "":
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "reason is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.AccountID == req.AccountID && j.Status == apiv1.JobRunning {
			out := *j
			out.Created = new(false)
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	created := Epoch.Add(time.Duration(len(s.jobs)) * time.Minute)
	j := &apiv1.Job{
		ID:          JobID(len(s.jobs) + 1),
		AccountID:   req.AccountID,
		Status:      apiv1.JobRunning,
		Origin:      "api",
		RequestedBy: req.RequestedBy,
		Reason:      req.Reason,
		CreatedAt:   created,
		UpdatedAt:   created,
		Deadline:    created.AddDate(0, 1, 0),
		Tasks:       NewTasks(),
	}
	s.jobs = append(s.jobs, j)
	out := *j
	out.Created = new(true)
	writeJSON(w, http.StatusAccepted, out)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !uuidPattern.MatchString(id) {
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "job id must be a UUID as returned by POST /v1/erasures")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	for _, j := range s.jobs {
		if j.ID == id {
			if s.advance != nil {
				s.advance(j)
			}
			out := *j
			out.Tasks = slices.Clone(j.Tasks)
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	writeError(w, http.StatusNotFound, apiv1.CodeNotFound, "no such job")
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size := 50
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 500 {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "page_size must be a number from 1 to 500")
			return
		}
		size = n
	}
	switch st := q.Get("status"); st {
	case "", apiv1.JobRunning, apiv1.JobCompleted, apiv1.JobFailed:
	default:
		writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "unknown status")
		return
	}
	offset := 0
	if v := q.Get("page_token"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, apiv1.CodeInvalidArgument, "bad page_token")
			return
		}
		offset = n
	}
	s.mu.Lock()
	var match []apiv1.Job
	for i := len(s.jobs) - 1; i >= 0; i-- { // newest first
		j := s.jobs[i]
		if (q.Get("account_id") == "" || j.AccountID == q.Get("account_id")) &&
			(q.Get("status") == "" || j.Status == q.Get("status")) {
			match = append(match, *j)
		}
	}
	s.mu.Unlock()
	out := apiv1.JobList{Jobs: []apiv1.Job{}}
	if offset < len(match) {
		end := min(offset+size, len(match))
		out.Jobs = match[offset:end]
		if end < len(match) {
			out.NextPageToken = strconv.Itoa(end)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func methodNotAllowed(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusMethodNotAllowed, apiv1.CodeMethodNotAllowed, "method not allowed")
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiv1.ErrorBody{Error: apiv1.ErrorDetail{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
