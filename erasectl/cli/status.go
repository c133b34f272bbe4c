package cli

import (
	"context"
	"flag"
	"fmt"
)

var statusSpec = commandSpec{
	name:    "status",
	summary: "show a job and its tasks",
	usage:   "status JOB_ID",
	description: `
Shows a job (GET /v1/erasures/{id}): its status, who asked and why, its
deadline, and one row per task: category, stage, action, status, delivery
attempts, items purged and the error of a failed task. Exits 6 when there is
no such job.`,
	examples: `  erasectl status 0b7e6f7c-3f1d-4c1a-9a43-6d0f3c2a9e51
  erasectl status 0b7e6f7c-3f1d-4c1a-9a43-6d0f3c2a9e51 -o json`,
	globals: flagAPIURL,
	new:     func() command { return &statusCmd{} },
}

type statusCmd struct {
	jobID string
}

func (c *statusCmd) flags(*flag.FlagSet) {}

func (c *statusCmd) args(pos []string) error {
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one JOB_ID, got %d arguments", len(pos))
	}
	c.jobID = pos[0]
	return validateID("job id", c.jobID)
}

func (c *statusCmd) run(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
	}
	job, err := client.GetErasure(ctx, c.jobID)
	if err != nil {
		return p.apiError(err, c.jobID)
	}
	return p.printJob(job, true)
}
