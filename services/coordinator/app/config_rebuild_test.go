package app

import (
	"testing"
	"time"
)

func TestLoadConfigRebuildFlags(t *testing.T) {
	c, err := LoadConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if !c.RebuildOnEmpty || c.UnknownJobRetryDelay != time.Minute {
		t.Errorf("defaults: rebuild-on-empty %v, unknown-job-retry-delay %s; want true, 1m", c.RebuildOnEmpty, c.UnknownJobRetryDelay)
	}
	c, err = LoadConfig([]string{"-rebuild-on-empty=false", "-unknown-job-retry-delay", "5s"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.RebuildOnEmpty || c.UnknownJobRetryDelay != 5*time.Second {
		t.Errorf("flags: rebuild-on-empty %v, unknown-job-retry-delay %s", c.RebuildOnEmpty, c.UnknownJobRetryDelay)
	}
}
