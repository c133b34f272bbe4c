package apiclient

import (
	"context"
	"fmt"
	"net/http"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// Rebuild rebuilds the coordinator's Redis state from the lifecycle stream
// (POST /v1/admin/rebuild) and returns its summary. It answers only when
// the rebuild is done, which can take minutes: give the client a long
// enough timeout. A rebuild already running is an *APIError with status
// 409.
func (c *Client) Rebuild(ctx context.Context) (apiv1.RebuildSummary, error) {
	var out apiv1.RebuildSummary
	if err := c.do(ctx, http.MethodPost, "/v1/admin/rebuild", nil, nil, &out); err != nil {
		return apiv1.RebuildSummary{}, fmt.Errorf("rebuild: %w", err)
	}
	return out, nil
}
