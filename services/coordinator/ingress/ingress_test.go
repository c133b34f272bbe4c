package ingress

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	accountsv1 "github.com/lethe-privacy/lethe/proto/accounts/v1"
	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
	"github.com/lethe-privacy/lethe/services/coordinator/jobs"
)

func TestDecode(t *testing.T) {
	pb, _ := proto.Marshal(&accountsv1.AccountDeleted{EventId: "e1", AccountId: "acc-1", RequestedBy: "customer:acc-1"})
	tests := []struct {
		name        string
		data        []byte
		contentType string
		wantAccount string
		wantErr     bool
	}{
		{"protobuf", pb, "", "acc-1", false},
		{"protobuf with explicit type", pb, "application/protobuf", "acc-1", false},
		{"json", []byte(`{"eventId":"e1","accountId":"acc-1"}`), erasurev1.ContentTypeJSON, "acc-1", false},
		{"json with proto field names", []byte(`{"event_id":"e1","account_id":"acc-1"}`), erasurev1.ContentTypeJSON, "acc-1", false},
		{"json unknown field", []byte(`{"accountId":"acc-1","email":"x@y"}`), erasurev1.ContentTypeJSON, "", true},
		{"json garbage", []byte(`{"accountId":`), erasurev1.ContentTypeJSON, "", true},
		{"protobuf garbage", []byte{0x0a, 0xff, 0xff}, "", "", true},
		{"json sent without content type", []byte(`{"accountId":"acc-1"}`), "", "", true},
		{"oversized", []byte(strings.Repeat("x", MaxEventBytes+1)), erasurev1.ContentTypeJSON, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode(tt.data, tt.contentType)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Decode() error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && ev.GetAccountId() != tt.wantAccount {
				t.Errorf("account = %q, want %q", ev.GetAccountId(), tt.wantAccount)
			}
		})
	}
}

// TestDecodeErrorsQuoteNothing: protojson's own messages quote the field
// or value it choked on; Decode keeps only the position, so that a
// rejection reason can be stored and shown without the event's content.
func TestDecodeErrorsQuoteNothing(t *testing.T) {
	const secret = "alice@example.com"
	tests := []struct {
		name string
		data string
		want string
	}{
		{"unknown field", `{"accountId":"acc-1","` + secret + `":1}`, "decode json event: not a protojson AccountDeleted at line 1:22"},
		{"bad timestamp", `{"accountId":"acc-1","deletedAt":"` + secret + `"}`, "decode json event: not a protojson AccountDeleted at line 1:34"},
		{"wrong type", `{"accountId":["` + secret + `"]}`, "decode json event: not a protojson AccountDeleted at line 1:14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.data), erasurev1.ContentTypeJSON)
			if err == nil || strings.Contains(err.Error(), secret) || err.Error() != tt.want {
				t.Errorf("Decode() error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRequestOfFillsDefaults(t *testing.T) {
	r := RequestOf(&accountsv1.AccountDeleted{AccountId: "acc-1"})
	if r.Origin != jobs.OriginDashboard || r.RequestedBy != "dashboard" || r.Reason == "" {
		t.Errorf("RequestOf = %+v", r)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

// FuzzDecode feeds arbitrary bytes through the decoder and the validation
// that follows it: neither may panic, and whatever passes validation is a
// well-formed request.
func FuzzDecode(f *testing.F) {
	pb, _ := proto.Marshal(&accountsv1.AccountDeleted{EventId: "e1", AccountId: "acc-1", Reason: "closed"})
	f.Add(pb, false)
	f.Add([]byte(`{"eventId":"e1","accountId":"acc-1","requestedBy":"dashboard"}`), true)
	f.Add([]byte(`{"accountId":"a@b"}`), true)
	f.Add([]byte{0x12, 0x80}, false)
	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		ct := ""
		if asJSON {
			ct = erasurev1.ContentTypeJSON
		}
		ev, err := Decode(data, ct)
		if err != nil {
			return
		}
		req := RequestOf(ev)
		if err := req.Validate(); err != nil {
			if !errors.Is(err, jobs.ErrInvalid) {
				t.Fatalf("validation error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if strings.Contains(req.AccountID, "@") || !utf8.ValidString(req.AccountID) || req.AccountID == "" {
			t.Fatalf("invalid account id passed validation: %q", req.AccountID)
		}
	})
}
