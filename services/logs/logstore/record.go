package logstore

import (
	"time"
	"unicode/utf8"
)

// EventType is what happened to a message.
type EventType string

// The events the platform logs.
const (
	EventSent      EventType = "sent"
	EventDelivered EventType = "delivered"
	EventOpened    EventType = "opened"
	EventClicked   EventType = "clicked"
	EventBounced   EventType = "bounced"
)

// Record is one line of a segment: one event of one message of one
// account. On disk it is a JSON object on a line of its own; the JSON keys
// are the struct tags, and a reader must not depend on their order.
//
// Recipient, Subject, URL and MessageID are personal data. Record's fmt
// forms (String, GoString) leave them out, so that a Record printed by
// mistake leaks nothing; never log them.
type Record struct {
	Time      time.Time `json:"ts"`
	AccountID string    `json:"account_id"`
	Event     EventType `json:"event"`
	MessageID string    `json:"message_id"`
	Recipient string    `json:"recipient"`
	Subject   string    `json:"subject"`
	// URL is the clicked link of a click event.
	URL string `json:"url,omitempty"`
	// Bounce is the remote server's reply of a bounce ("550 5.1.1 ...").
	Bounce string `json:"bounce,omitempty"`
}

// String prints the record's ids and event only.
func (r Record) String() string {
	return "logstore.Record{account_id=" + r.AccountID + " event=" + string(r.Event) +
		" ts=" + r.Time.UTC().Format(time.RFC3339) + " personal fields redacted}"
}

// GoString is String, for %#v.
func (r Record) GoString() string { return r.String() }

// appendLine appends r as one segment line, newline included. It writes the
// same JSON as encoding/json would (keys in struct order), without
// reflection: Seed writes millions of these.
func appendLine(dst []byte, r *Record) []byte {
	dst = append(dst, `{"ts":"`...)
	dst = r.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","account_id":`...)
	dst = appendJSONString(dst, r.AccountID)
	dst = append(dst, `,"event":`...)
	dst = appendJSONString(dst, string(r.Event))
	dst = append(dst, `,"message_id":`...)
	dst = appendJSONString(dst, r.MessageID)
	dst = append(dst, `,"recipient":`...)
	dst = appendJSONString(dst, r.Recipient)
	dst = append(dst, `,"subject":`...)
	dst = appendJSONString(dst, r.Subject)
	if r.URL != "" {
		dst = append(dst, `,"url":`...)
		dst = appendJSONString(dst, r.URL)
	}
	if r.Bounce != "" {
		dst = append(dst, `,"bounce":`...)
		dst = appendJSONString(dst, r.Bounce)
	}
	return append(dst, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as with encoding/json, so every line written is valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
