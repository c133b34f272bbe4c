package main

import (
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/lethe-privacy/lethe/services/billing/stripeapi"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	const secret = "sk_live_TopSecret123"
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantErr  string
		wantURL  string
		wantKey  string
		wantHTTP string
	}{
		{
			name: "production", env: map[string]string{"LETHE_STRIPE_API_KEY": secret},
			wantURL: stripeapi.DefaultBaseURL, wantKey: secret, wantHTTP: defaultHTTPAddr,
		},
		{
			name: "stripe-mock needs no key", env: map[string]string{"LETHE_STRIPE_API_URL": "http://127.0.0.1:12111"},
			wantURL: "http://127.0.0.1:12111", wantKey: demoStripeKey, wantHTTP: defaultHTTPAddr,
		},
		{
			name: "flags", args: []string{"-stripe-api-url", "http://localhost:12111", "-http-addr", "127.0.0.1:9999"},
			wantURL: "http://localhost:12111", wantKey: demoStripeKey, wantHTTP: "127.0.0.1:9999",
		},
		{name: "no key for Stripe", wantErr: "LETHE_STRIPE_API_KEY is not set"},
		{
			name: "publishable key", env: map[string]string{"LETHE_STRIPE_API_KEY": "pk_live_TopSecret123"},
			wantErr: "not a secret (sk_) or restricted (rk_) key",
		},
		{
			name: "plain http elsewhere", env: map[string]string{"LETHE_STRIPE_API_URL": "http://stripe.internal.example", "LETHE_STRIPE_API_KEY": secret},
			wantErr: "plain http",
		},
		{name: "stray argument", args: []string{"now"}, env: map[string]string{"LETHE_STRIPE_API_KEY": secret}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(tt.args, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadConfig = %v, want an error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "TopSecret") {
					t.Errorf("error %q reveals the key", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if c.stripe.BaseURL != tt.wantURL || c.stripe.APIKey.Reveal() != tt.wantKey || c.service.HTTPAddr != tt.wantHTTP || c.dsn != defaultDSN {
				t.Errorf("config = url %q key-ok %v http %q dsn %q", c.stripe.BaseURL, c.stripe.APIKey.Reveal() == tt.wantKey, c.service.HTTPAddr, c.dsn)
			}
		})
	}
}

func TestLoadConfigHelp(t *testing.T) {
	t.Parallel()
	if _, err := loadConfig([]string{"-h"}, func(string) string { return "" }); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("loadConfig(-h) = %v, want flag.ErrHelp", err)
	}
}
