package jobs

import (
	"testing"

	"github.com/lethe-privacy/lethe/services/coordinator/policy"
)

func TestOriginsMatchPolicy(t *testing.T) {
	if policy.OriginDashboard != string(OriginDashboard) || policy.OriginAPI != string(OriginAPI) {
		t.Fatal("policy origins differ from jobs origins")
	}
}
