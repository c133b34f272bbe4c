package apiclient_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lethe-privacy/lethe/erasectl/apiclient"
	"github.com/lethe-privacy/lethe/erasectl/internal/apitest"
	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

func newClient(t *testing.T, url string) *apiclient.Client {
	t.Helper()
	c, err := apiclient.New(url)
	if err != nil {
		t.Fatalf("New(%q): %v", url, err)
	}
	return c
}

func TestNew(t *testing.T) {
	tests := []struct {
		give    string
		wantErr bool
		wantURL string
	}{
		{give: "http://127.0.0.1:8080", wantURL: "http://127.0.0.1:8080"},
		{give: "https://lethe.example/api/", wantURL: "https://lethe.example/api"},
		{give: "http://ops:secret@127.0.0.1:8080", wantURL: "http://ops:xxxxx@127.0.0.1:8080"},
		{give: "127.0.0.1:8080", wantErr: true},
		{give: "ftp://127.0.0.1", wantErr: true},
		{give: "http://", wantErr: true},
		{give: "://bad", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			c, err := apiclient.New(tt.give)
			if tt.wantErr {
				if !errors.Is(err, apiclient.ErrInvalidOption) {
					t.Fatalf("New(%q) error = %v, want ErrInvalidOption", tt.give, err)
				}
				if err != nil && strings.Contains(err.Error(), "secret") {
					t.Errorf("error leaks the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.give, err)
			}
			if got := c.BaseURL(); got != tt.wantURL {
				t.Errorf("BaseURL() = %q, want %q", got, tt.wantURL)
			}
		})
	}
	if _, err := apiclient.New("http://x", apiclient.WithHTTPClient(nil)); !errors.Is(err, apiclient.ErrInvalidOption) {
		t.Errorf("WithHTTPClient(nil) error = %v, want ErrInvalidOption", err)
	}
}

func TestCreateErasureIsIdempotent(t *testing.T) {
	srv := apitest.New(t)
	c := newClient(t, srv.URL)
	ctx := t.Context()
	req := apiv1.CreateErasureRequest{AccountID: "acct-1", RequestedBy: "privacy-team", Reason: "DSR 4711"}

	first, err := c.CreateErasure(ctx, req)
	if err != nil {
		t.Fatalf("CreateErasure: %v", err)
	}
	if first.ID == "" || first.AccountID != "acct-1" || first.Status != apiv1.JobRunning {
		t.Errorf("first job = %+v, want a running job of acct-1", first)
	}
	if first.Created == nil || !*first.Created {
		t.Errorf("first Created = %v, want true", first.Created)
	}
	if len(first.Tasks) != 2 {
		t.Errorf("first job has %d tasks, want 2", len(first.Tasks))
	}

	second, err := c.CreateErasure(ctx, req)
	if err != nil {
		t.Fatalf("CreateErasure again: %v", err)
	}
	if second.ID != first.ID {
		t.Errorf("second job id = %s, want the existing %s", second.ID, first.ID)
	}
	if second.Created == nil || *second.Created {
		t.Errorf("second Created = %v, want false", second.Created)
	}
}

func TestCreateErasureRejected(t *testing.T) {
	srv := apitest.New(t)
	c := newClient(t, srv.URL)
	_, err := c.CreateErasure(t.Context(), apiv1.CreateErasureRequest{AccountID: "acct-1", RequestedBy: "ops"})
	var ae *apiclient.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v, want *APIError", err)
	}
	want := apiclient.APIError{Status: 400, Code: apiv1.CodeInvalidArgument, Message: "reason is required"}
	if *ae != want {
		t.Errorf("APIError = %+v, want %+v", *ae, want)
	}
}

func TestGetErasure(t *testing.T) {
	srv := apitest.New(t)
	id := apitest.JobID(1)
	srv.AddJob(apiv1.Job{ID: id, AccountID: "acct-1", Status: apiv1.JobCompleted, Tasks: apitest.NewTasks()})
	c := newClient(t, srv.URL)

	job, err := c.GetErasure(t.Context(), id)
	if err != nil {
		t.Fatalf("GetErasure: %v", err)
	}
	if job.ID != id || job.Status != apiv1.JobCompleted || len(job.Tasks) != 2 {
		t.Errorf("job = %+v", job)
	}
	if !job.CreatedAt.Equal(apitest.Epoch) {
		t.Errorf("CreatedAt = %v, want %v", job.CreatedAt, apitest.Epoch)
	}

	_, err = c.GetErasure(t.Context(), apitest.JobID(2))
	if !apiclient.IsNotFound(err) {
		t.Fatalf("GetErasure(missing) error = %v, want not found", err)
	}
	var ae *apiclient.APIError
	if errors.As(err, &ae) && ae.Code != apiv1.CodeNotFound {
		t.Errorf("Code = %q, want %q", ae.Code, apiv1.CodeNotFound)
	}

	_, err = c.GetErasure(t.Context(), "job-a")
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != apiv1.CodeInvalidArgument {
		t.Errorf("GetErasure(malformed id) error = %v, want a 400 invalid_argument", err)
	}

	if _, err := c.GetErasure(t.Context(), ""); !errors.Is(err, apiclient.ErrInvalidArgument) {
		t.Errorf("GetErasure(\"\") error = %v, want ErrInvalidArgument", err)
	}
}

func TestGetErasureEscapesID(t *testing.T) {
	var gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.EscapedPath()
		w.Write([]byte(`{"id":"x"}`))
	}))
	t.Cleanup(srv.Close)
	if _, err := newClient(t, srv.URL+"/prefix").GetErasure(t.Context(), "a/b?c"); err != nil {
		t.Fatalf("GetErasure: %v", err)
	}
	if want := "/prefix/v1/erasures/a%2Fb%3Fc"; gotPath != want {
		t.Errorf("path = %q, want %q", gotPath, want)
	}
}

func TestListErasuresPages(t *testing.T) {
	srv := apitest.New(t)
	for i, acct := range []string{"acct-1", "acct-2", "acct-1", "acct-3", "acct-1"} {
		status := apiv1.JobCompleted
		if i == 4 {
			status = apiv1.JobRunning
		}
		srv.AddJob(apiv1.Job{ID: "job-" + string(rune('a'+i)), AccountID: acct, Status: status})
	}
	c := newClient(t, srv.URL)
	ctx := t.Context()

	tests := []struct {
		name      string
		account   string
		status    string
		pageSize  int
		wantPages [][]string
	}{
		{name: "all in one page", wantPages: [][]string{{"job-e", "job-d", "job-c", "job-b", "job-a"}}},
		{name: "pages of two", pageSize: 2, wantPages: [][]string{{"job-e", "job-d"}, {"job-c", "job-b"}, {"job-a"}}},
		{name: "by account", account: "acct-1", pageSize: 2, wantPages: [][]string{{"job-e", "job-c"}, {"job-a"}}},
		{name: "by status", status: apiv1.JobRunning, wantPages: [][]string{{"job-e"}}},
		{name: "by account and status", account: "acct-1", status: apiv1.JobCompleted, wantPages: [][]string{{"job-c", "job-a"}}},
		{name: "no match", account: "acct-9", wantPages: [][]string{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]string
			token := ""
			for {
				page, err := c.ListErasures(ctx, tt.account, tt.status, tt.pageSize, token)
				if err != nil {
					t.Fatalf("ListErasures: %v", err)
				}
				ids := []string{}
				for _, j := range page.Jobs {
					ids = append(ids, j.ID)
				}
				got = append(got, ids)
				if page.NextPageToken == "" {
					break
				}
				token = page.NextPageToken
			}
			if !equalPages(got, tt.wantPages) {
				t.Errorf("pages = %v, want %v", got, tt.wantPages)
			}
		})
	}

	if _, err := c.ListErasures(ctx, "", "bogus", 0, ""); err == nil {
		t.Error("ListErasures(status bogus) succeeded, want an *APIError")
	}
	if _, err := c.ListErasures(ctx, "", "", -1, ""); !errors.Is(err, apiclient.ErrInvalidArgument) {
		t.Errorf("ListErasures(page size -1) error = %v, want ErrInvalidArgument", err)
	}
}

func equalPages(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], ",") != strings.Join(b[i], ",") {
			return false
		}
	}
	return true
}

func TestErrorBodies(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   apiclient.APIError
	}{
		{
			name:   "documented body",
			status: 503,
			body:   `{"error":{"code":"unavailable","message":"job store unavailable"}}`,
			want:   apiclient.APIError{Status: 503, Code: "unavailable", Message: "job store unavailable"},
		},
		{
			name:   "proxy page",
			status: 502,
			body:   `<html>bad gateway</html>`,
			want:   apiclient.APIError{Status: 502, Message: "bad gateway"},
		},
		{
			name:   "empty body",
			status: 500,
			want:   apiclient.APIError{Status: 500, Message: "internal server error"},
		},
		{
			name:   "json of another shape",
			status: 404,
			body:   `{"detail":"nope"}`,
			want:   apiclient.APIError{Status: 404, Message: "not found"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			_, err := newClient(t, srv.URL).GetErasure(t.Context(), "job-a")
			var ae *apiclient.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error = %v, want *APIError", err)
			}
			if *ae != tt.want {
				t.Errorf("APIError = %+v, want %+v", *ae, tt.want)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	// A port that was just free: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	c := newClient(t, "http://"+addr)
	_, err = c.GetErasure(t.Context(), "job-a")
	var ue *apiclient.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("error = %v, want *UnreachableError", err)
	}
	if ue.URL != "http://"+addr {
		t.Errorf("URL = %q, want %q", ue.URL, "http://"+addr)
	}
}

func TestCancelledContextIsNotUnreachable(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := newClient(t, srv.URL).GetErasure(ctx, "job-a")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want context.DeadlineExceeded", err)
	}
	var ue *apiclient.UnreachableError
	if errors.As(err, &ue) {
		t.Errorf("error is an *UnreachableError, want the context's error: %v", err)
	}
}
