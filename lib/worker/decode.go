package worker

import (
	"errors"
	"fmt"
	"regexp"

	"google.golang.org/protobuf/proto"

	erasurev1 "github.com/lethe-privacy/lethe/proto/erasure/v1"
)

// ErrBadTask wraps every reason DecodeTask rejects a task message for.
var ErrBadTask = errors.New("bad task message")

var (
	// Internal ids only: the pattern keeps e-mail addresses and free text
	// out of everything that logs or reports a task.
	accountIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	jobIDPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	namePattern      = regexp.MustCompile(`^[a-z][a-z_]{0,63}$`)
)

// DecodeTask decodes a task message of the given category and checks that
// its ids and names are well-formed. Errors wrap ErrBadTask and name the
// field, never its value, so that they can be logged.
func DecodeTask(data []byte, category string) (Task, error) {
	var pb erasurev1.ErasureTask
	if err := proto.Unmarshal(data, &pb); err != nil {
		return Task{}, fmt.Errorf("%w: not a protobuf ErasureTask", ErrBadTask)
	}
	switch {
	case !jobIDPattern.MatchString(pb.GetJobId()):
		return Task{}, fmt.Errorf("%w: malformed job_id", ErrBadTask)
	case !accountIDPattern.MatchString(pb.GetAccountId()):
		return Task{}, fmt.Errorf("%w: malformed account_id (an internal id, never an e-mail address)", ErrBadTask)
	case pb.GetCategory() != category:
		return Task{}, fmt.Errorf("%w: task of another category", ErrBadTask)
	case !namePattern.MatchString(pb.GetStage()):
		return Task{}, fmt.Errorf("%w: malformed stage", ErrBadTask)
	case pb.GetAction() != "" && !namePattern.MatchString(pb.GetAction()):
		return Task{}, fmt.Errorf("%w: malformed action", ErrBadTask)
	}
	return Task{
		JobID:      pb.GetJobId(),
		AccountID:  pb.GetAccountId(),
		Category:   pb.GetCategory(),
		Stage:      pb.GetStage(),
		Action:     pb.GetAction(),
		Generation: pb.GetGeneration(),
		Deadline:   pb.GetDeadline().AsTime(),
	}, nil
}

// ErrBadFootprintRequest wraps every reason DecodeFootprintRequest rejects a
// request for.
var ErrBadFootprintRequest = errors.New("bad footprint request")

// MaxFootprintAccounts bounds the accounts of one footprint request.
const MaxFootprintAccounts = 1000

// DecodeFootprintRequest decodes a footprint request (from erasectl or any
// client the broker lets ask) and returns its account ids: 1 to
// MaxFootprintAccounts internal ids. Errors wrap ErrBadFootprintRequest and
// name what is wrong, never a value, so that they can be sent back and
// logged.
func DecodeFootprintRequest(data []byte) ([]string, error) {
	var req erasurev1.FootprintRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: not a protobuf FootprintRequest", ErrBadFootprintRequest)
	}
	ids := req.GetAccountIds()
	if len(ids) == 0 || len(ids) > MaxFootprintAccounts {
		return nil, fmt.Errorf("%w: a footprint request names 1 to %d accounts, not %d", ErrBadFootprintRequest, MaxFootprintAccounts, len(ids))
	}
	for i, id := range ids {
		if !accountIDPattern.MatchString(id) {
			return nil, fmt.Errorf("%w: account id %d of %d is malformed (an internal id, never an e-mail address)", ErrBadFootprintRequest, i+1, len(ids))
		}
	}
	return ids, nil
}
