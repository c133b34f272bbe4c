package logstore

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// refAccountOf is the specification accountOf implements, written with
// encoding/json: the line is one valid JSON object whose top-level key
// "account_id" (exactly, after unescaping) appears once, with a string.
func refAccountOf(line []byte) (string, bool) {
	if !json.Valid(line) {
		return "", false
	}
	if t := bytes.TrimLeft(line, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		return "", false
	}
	var id string
	found := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", false
		}
		if key != "account_id" {
			continue
		}
		found++
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &id) != nil {
			found = 2
		}
	}
	return id, found == 1
}

func TestAccountOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		give   string
		want   string
		wantOK bool
	}{
		{name: "record", give: `{"ts":"2026-11-29T13:04:05Z","account_id":"acc-1","event":"sent"}`, want: "acc-1", wantOK: true},
		{name: "key last", give: `{"event":"sent","n":-1.5e3,"ok":true,"x":null,"account_id":"acc-1"}`, want: "acc-1", wantOK: true},
		{name: "white space and CRLF", give: " {\t\"account_id\" : \"acc-1\" }\r", want: "acc-1", wantOK: true},
		{name: "escaped key", give: `{"account\u005fid":"acc-1"}`, want: "acc-1", wantOK: true},
		{name: "escaped value", give: `{"account_id":"acc\u002d1"}`, want: "acc-1", wantOK: true},
		{name: "escaped quote in another value", give: `{"subject":"say \"account_id\":\"x\"","account_id":"acc-1"}`, want: "acc-1", wantOK: true},
		{name: "nested account_id is not the record's", give: `{"meta":{"account_id":"acc-2"},"account_id":"acc-1"}`, want: "acc-1", wantOK: true},
		{name: "only nested", give: `{"meta":{"account_id":"acc-2"}}`},
		{name: "duplicate key", give: `{"account_id":"acc-1","account_id":"acc-2"}`},
		{name: "duplicate key, one escaped", give: `{"account_id":"acc-1","account\u005fid":"acc-1"}`},
		{name: "number", give: `{"account_id":42}`},
		{name: "null", give: `{"account_id":null}`},
		{name: "key case differs", give: `{"Account_ID":"acc-1"}`},
		{name: "missing", give: `{"event":"sent"}`},
		{name: "empty object", give: `{}`},
		{name: "array", give: `["account_id","acc-1"]`},
		{name: "string", give: `"account_id"`},
		{name: "empty", give: ``},
		{name: "truncated", give: `{"account_id":"acc-1","subject":"Hal`},
		{name: "trailing garbage", give: `{"account_id":"acc-1"} x`},
		{name: "two objects", give: `{"account_id":"acc-1"}{"account_id":"acc-2"}`},
		{name: "trailing comma", give: `{"account_id":"acc-1",}`},
		{name: "control character in string", give: "{\"account_id\":\"acc\x01\"}"},
		{name: "bad escape", give: `{"account_id":"acc\x"}`},
		{name: "short unicode escape", give: `{"account_id":"acc\u12"}`},
		{name: "leading zero", give: `{"n":01,"account_id":"acc-1"}`},
		{name: "bare minus", give: `{"n":-,"account_id":"acc-1"}`},
		{name: "invalid UTF-8 replaced", give: "{\"account_id\":\"acc\xff\"}", want: "acc\ufffd", wantOK: true},
		{name: "lone surrogate replaced", give: `{"account_id":"a\ud800b"}`, want: "a\ufffdb", wantOK: true},
		{name: "surrogate pair", give: `{"account_id":"a\ud83d\ude00"}`, want: "a😀", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var scratch []byte
			got, ok := accountOf([]byte(tt.give), &scratch)
			if ok != tt.wantOK || (ok && string(got) != tt.want) {
				t.Errorf("accountOf(%q) = %q, %v; want %q, %v", tt.give, got, ok, tt.want, tt.wantOK)
			}
			ref, refOK := refAccountOf([]byte(tt.give))
			if refOK != tt.wantOK || (refOK && ref != tt.want) {
				t.Errorf("the reference disagrees with the table: %q, %v", ref, refOK)
			}
		})
	}
}

// Both agree on encoding/json's nesting limit.
func TestAccountOfNestingLimit(t *testing.T) {
	t.Parallel()
	for _, depth := range []int{maxNestingDepth - 1, maxNestingDepth, maxNestingDepth + 1} {
		// depth counts the top-level object too.
		line := `{"account_id":"acc-1","x":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
		var scratch []byte
		_, ok := accountOf([]byte(line), &scratch)
		if want := json.Valid([]byte(line)); ok != want {
			t.Errorf("depth %d: accountOf ok = %v, json.Valid = %v", depth, ok, want)
		}
	}
}

// FuzzAccountOf checks the line decoder against its specification: any
// disagreement could hide a record from an erasure, or erase the wrong
// one.
func FuzzAccountOf(f *testing.F) {
	for _, s := range []string{
		`{"ts":"2026-11-29T13:04:05.123Z","account_id":"acc-000001","event":"sent","message_id":"<a@b.example>","recipient":"jane@nordpost.example","subject":"Hallo"}`,
		`{"account\u005fid":"acc-1"}`,
		`{"account_id":"acc-1","account_id":"acc-2"}`,
		`{"meta":{"account_id":"x"},"account_id":"y","n":[1,2.5e-3,{"a":null}]}`,
		`{"account_id":"a\ud83d\ude00\ud800"}`,
		"{\"account_id\":\"\xff\xfe\"}",
		`{"account_id":true}`,
		` { } `,
		`{"a":-0.0e+1,"account_id":""}`,
		`[{"account_id":"acc-1"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var scratch []byte
		got, ok := accountOf(line, &scratch)
		want, wantOK := refAccountOf(line)
		if ok != wantOK || (ok && string(got) != want) {
			t.Fatalf("accountOf(%q) = %q, %v; encoding/json says %q, %v", line, got, ok, want, wantOK)
		}
	})
}

// FuzzLineRoundTrip checks the encoder the seeder writes with: every
// record becomes one valid JSON line that encoding/json reads back (with
// invalid UTF-8 replaced, as encoding/json does) and accountOf attributes
// to its account.
func FuzzLineRoundTrip(f *testing.F) {
	f.Add("acc-1", "jane.doe@nordpost.example", "Ihr Newsletter im November", "https://x.example/?a=1&b=<2>")
	f.Add("acc\"\\\n", "\x00\x1f\u2028", "\xff\xfe", "")
	f.Fuzz(func(t *testing.T, account, recipient, subject, url string) {
		r := Record{
			Time:      time.Date(2026, 11, 29, 13, 4, 5, 123456789, time.UTC),
			AccountID: account, Event: EventClicked, MessageID: "<m@x.example>",
			Recipient: recipient, Subject: subject, URL: url,
		}
		line := appendLine(nil, &r)
		if bytes.Count(line, []byte{'\n'}) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("line %q is not one line", line)
		}
		var back Record
		if err := json.Unmarshal(line, &back); err != nil {
			t.Fatalf("encoding/json cannot read %q: %v", line, err)
		}
		valid := func(s string) string { return string([]rune(s)) }
		want := r
		want.AccountID, want.Recipient, want.Subject, want.URL = valid(account), valid(recipient), valid(subject), valid(url)
		if !back.Time.Equal(want.Time) || back.AccountID != want.AccountID || back.Recipient != want.Recipient ||
			back.Subject != want.Subject || back.URL != want.URL || back.Event != want.Event {
			t.Fatalf("round trip of %q changed the record", line)
		}
		var scratch []byte
		id, ok := accountOf(line[:len(line)-1], &scratch)
		if !ok || string(id) != want.AccountID {
			t.Fatalf("accountOf(%q) = %q, %v; want %q", line, id, ok, want.AccountID)
		}
	})
}

func TestRecordPrintsNoPersonalData(t *testing.T) {
	t.Parallel()
	r := Record{AccountID: "acc-1", Event: EventOpened, Recipient: "jane.doe@nordpost.example", Subject: "Geheim", MessageID: "<m@x.example>", URL: "https://x.example/t"}
	for _, s := range []string{r.String(), r.GoString()} {
		for _, personal := range []string{r.Recipient, r.Subject, r.MessageID, r.URL} {
			if strings.Contains(s, personal) {
				t.Errorf("%q prints %q", s, personal)
			}
		}
		if !strings.Contains(s, "acc-1") {
			t.Errorf("%q does not name the account", s)
		}
	}
}
