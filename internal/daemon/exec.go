package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// Child runs the application as a child of ferry (`ferry replicate -exec`),
// so that one process supervisor starts both and the application's exit
// ends replication: signals that reach ferry are passed to the child, and
// when the child exits ferry stops, shipping first what the child
// committed (see Run), and exits with the child's code.
type Child struct {
	// Command is the command line, run by /bin/sh as `exec COMMAND`, so
	// quoting works as in a shell and the application itself, not a
	// shell, receives the signals.
	Command string
	// Ready, when set, holds the child back until it closes: replication
	// starts first. A promoted standby starts its application only once
	// the replicator is capturing, so that nothing the application writes
	// lands in the log before the replicator has seen it empty.
	Ready <-chan struct{}
}

// Run starts the child, then runs replicate with a context that ends when
// the child has exited; replicate answers that end by flushing, as it
// answers SIGTERM. It returns the child's exit code.
func (c Child) Run(ctx context.Context, replicate func(ctx context.Context) error) (int, error) {
	if c.Command == "" {
		return 1, errors.New("-exec needs a command")
	}
	cmd := exec.Command("/bin/sh", "-c", "exec "+c.Command)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	replicated := make(chan error, 1)
	start := func() { go func() { replicated <- replicate(rctx) }() }
	if c.Ready != nil {
		start()
		select {
		case <-c.Ready:
		case err := <-replicated:
			if err == nil {
				err = errors.New("replication stopped before it was ready")
			}
			return 1, err
		case <-ctx.Done():
			stop()
			return 1, errors.Join(ctx.Err(), <-replicated)
		}
	}
	if err := cmd.Start(); err != nil {
		if c.Ready != nil {
			stop()
			<-replicated
		}
		return 1, fmt.Errorf("-exec: start %q: %w", c.Command, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if c.Ready == nil {
		start()
	}

	var childErr error
	for waiting := true; waiting; {
		select {
		case s := <-sigs:
			// The child decides what a signal means; its exit ends us.
			_ = cmd.Process.Signal(s)
		case childErr = <-exited:
			waiting = false
		case err := <-replicated:
			// Replication failed: the application must not run on
			// believing its data is safe.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			return 1, err
		}
	}
	// ctx is not consulted here: the SIGTERM that stopped the child has
	// usually ended it too, and that is exactly when pending data must
	// still go out; replicate's own shutdown timeout bounds the flush.
	stop()
	if err := <-replicated; err != nil {
		return 1, err
	}
	var ee *exec.ExitError
	if errors.As(childErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if childErr != nil {
		return 1, childErr
	}
	return 0, nil
}
