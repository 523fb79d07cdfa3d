// Package sshexec runs shell programs on hosts for the SSH activities:
// connections and their routes through jump hosts, the exactly-once
// wrapper, output capture and host facts. It knows nothing of the
// database: logins, host key checks and where output goes are handed in
// by the activities (package activities) as values and callbacks.
package sshexec

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// Runner runs shell programs on one host: over an SSH connection
// (Remote), or on the worker itself for the local transport (Local).
type Runner interface {
	// Exec runs script with sh and returns its stdout.
	Exec(ctx context.Context, script string) (string, error)
}

// Remote runs each program in a new session of its connection.
type Remote struct{ Client *ssh.Client }

// Exec runs script in a new session and returns its stdout.
func (r Remote) Exec(ctx context.Context, script string) (string, error) {
	sess, err := r.Client.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	// The program goes in on stdin, not the command line: other users of
	// the host can read command lines (ps), and it may carry secrets.
	sess.Stdin = strings.NewReader(script)
	out, err := sess.Output("/bin/sh -s")
	if err != nil {
		return "", fmt.Errorf("run commands: %w", err)
	}
	return string(out), nil
}

// Local runs each program on the worker, as its user, in a session of its
// own (as sshd would), so that killing the session ends it all.
type Local struct{}

// Exec runs script and returns its output. When ctx ends first (the
// activity cancelled, or timed out on a busy worker), the program is hung
// up on, as sshd does when a connection drops, and not killed: the
// exactly-once wrapper ignores SIGHUP once it holds its lock, so the
// script runs to its end and records its status for the retry that
// collects it. (Killed, it would leave a lock without a status, and the
// retry would wait for ever.) Aborts and host timeouts kill the session
// (Kill).
func (Local) Exec(ctx context.Context, script string) (string, error) {
	cmd := exec.Command("/bin/sh", "-s")
	cmd.Stdin = strings.NewReader(script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("run commands: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }() // reaps the program whenever it ends
	select {
	case err := <-done:
		if err != nil {
			return "", fmt.Errorf("run commands: %w", err)
		}
		return out.String(), nil
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGHUP)
		return "", fmt.Errorf("run commands: %w", ctx.Err())
	}
}
