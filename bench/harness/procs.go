package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// proc is a child process the harness started: a server or a Lethe
// service. Its output goes to a log file in the work directory.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // set before done is closed
}

// startProc starts path with args and the extra environment, its output in
// logDir/name.log. The child is killed if the harness dies (see
// setParentDeath), so that no server outlives an interrupted run.
func startProc(name, path string, args, env []string, logDir string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log file of %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	setParentDeath(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end (SIGTERM), waits up to timeout, then kills
// it. It returns an error when the process had to be killed.
func (p *proc) stop(timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM for %s and was killed; see %s", p.name, timeout, p.logPath)
	}
}

// usage is a process's resource use at one moment.
type usage struct {
	// CPU is user + system time in seconds since the process started.
	CPU float64
	// RSS is the resident set now, HWM its peak (VmHWM), in bytes.
	RSS uint64
	HWM uint64
}

// usage reads the process's CPU time and memory from /proc.
func (p *proc) usage() (usage, error) {
	fp, err := procfs.NewProc(p.pid())
	if err != nil {
		return usage{}, fmt.Errorf("read /proc of %s: %w", p.name, err)
	}
	st, err := fp.Stat()
	if err != nil {
		return usage{}, fmt.Errorf("read /proc stat of %s: %w", p.name, err)
	}
	status, err := fp.NewStatus()
	if err != nil {
		return usage{}, fmt.Errorf("read /proc status of %s: %w", p.name, err)
	}
	return usage{CPU: st.CPUTime(), RSS: status.VmRSS, HWM: status.VmHWM}, nil
}

// selfUsage is the harness's own resource use: it shares the machine with
// what it measures, so its share is reported too.
func selfUsage() (usage, error) {
	fp, err := procfs.Self()
	if err != nil {
		return usage{}, fmt.Errorf("read /proc/self: %w", err)
	}
	st, err := fp.Stat()
	if err != nil {
		return usage{}, fmt.Errorf("read /proc/self/stat: %w", err)
	}
	status, err := fp.NewStatus()
	if err != nil {
		return usage{}, fmt.Errorf("read /proc/self/status: %w", err)
	}
	return usage{CPU: st.CPUTime(), RSS: status.VmRSS, HWM: status.VmHWM}, nil
}

// waitHTTP polls url until it answers 2xx, the process exits or ctx ends.
func waitHTTP(ctx context.Context, url string, p *proc, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start-up (%v); read %s", p.name, p.err, p.logPath)
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer %s within %s; read %s", p.name, url, within, p.logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
// Another program may take it before the child binds it; the child then
// fails to start and says so in its log.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// stopAll stops the processes in reverse order and joins the errors.
func stopAll(procs []*proc, timeout time.Duration) error {
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if procs[i] != nil {
			errs = append(errs, procs[i].stop(timeout))
		}
	}
	return errors.Join(errs...)
}
