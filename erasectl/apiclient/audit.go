package apiclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
)

// maxAuditLine bounds one line of the audit walk's answer (a report lists
// at most 100 problems).
const maxAuditLine = 4 << 20

// VerifyAudit asks the coordinator to walk the lifecycle stream's audit
// chain (GET /v1/audit/verify) from stream sequence fromSeq (0: the start),
// at most limit entries (0: all), and returns its report. The coordinator
// sends progress lines while it walks; progress, if not nil, is called with
// each. A trail that does not verify is a report with OK false, not an
// error. A walk already running on that coordinator is an *APIError with
// status 409. The walk takes as long as the stream is long: give the
// client a long enough timeout.
func (c *Client) VerifyAudit(ctx context.Context, fromSeq, limit uint64, progress func(apiv1.AuditProgress)) (apiv1.AuditReport, error) {
	u := *c.base
	u.Path += "/v1/audit/verify"
	u.RawPath = ""
	q := url.Values{}
	if fromSeq > 0 {
		q.Set("from_seq", strconv.FormatUint(fromSeq, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.FormatUint(limit, 10))
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return apiv1.AuditReport{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", apiv1.MediaTypeNDJSON)
	c.setHeaders(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return apiv1.AuditReport{}, ctxErr
		}
		return apiv1.AuditReport{}, fmt.Errorf("verify the audit trail: %w", &UnreachableError{URL: c.BaseURL(), Err: unwrapURLError(err)})
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiv1.AuditReport{}, fmt.Errorf("verify the audit trail: %w", decodeError(resp))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxAuditLine)
	for sc.Scan() {
		var line apiv1.AuditLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return apiv1.AuditReport{}, fmt.Errorf("verify the audit trail: decode an answer line: %w", err)
		}
		switch {
		case line.Error != nil:
			return apiv1.AuditReport{}, fmt.Errorf("verify the audit trail: %w", &APIError{Status: http.StatusServiceUnavailable, Code: line.Error.Code, Message: line.Error.Message})
		case line.Report != nil:
			return *line.Report, nil
		case line.Progress != nil && progress != nil:
			progress(*line.Progress)
		}
	}
	err = sc.Err()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return apiv1.AuditReport{}, ctxErr
	}
	if err == nil {
		err = errors.New("the answer ended before the report")
	}
	return apiv1.AuditReport{}, fmt.Errorf("verify the audit trail: %w", &UnreachableError{URL: c.BaseURL(), Err: err})
}
