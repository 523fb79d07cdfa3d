package api

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"golang.org/x/crypto/ssh"
)

// BenchmarkSSH runs `uptime` on N real sshd targets at concurrency 100,
// side by side in one run: the opsflow job end to end through the API
// (until every host's result is stored, the worker in its own process), a
// raw x/crypto/ssh fan-out (the floor), parallel-ssh and ansible -m
// command. Targets (issue 4): opsflow <= 1.5x raw; faster than
// parallel-ssh; >= 5x faster than Ansible; worker RSS <= 300 MB.
//
//	go tool task bench:ssh
func BenchmarkSSH(b *testing.B) {
	for _, n := range []int{200, 1000} {
		b.Run("hosts="+strconv.Itoa(n), func(b *testing.B) { benchSSH(b, n) })
	}
}

func benchSSH(b *testing.B, n int) {
	const conc = 100
	e := newEnvWith(b, envOptions{noWorkers: true})
	targets := testenv.SSHD(b, n)
	pssh := testenv.EnsureCommand(b, "parallel-ssh", "pssh")
	ansible := testenv.EnsureCommand(b, "ansible", "ansible-core")
	worker := testenv.StartWorker(b, filepath.Join(b.TempDir(), "worker.log"), "OPSFLOW_DATABASE_URL="+e.dsn,
		"TEMPORAL_ADDRESS="+testenv.Temporal(b), "TEMPORAL_NAMESPACE="+testenv.TemporalNamespace,
		"OPSFLOW_SECRET_KEY="+e.keyText, "OPSFLOW_LOG_LEVEL=warn")
	p := fmt.Sprintf("bench%d-%d", n, time.Now().UnixNano())
	cred := e.credential(p, targets)
	script := e.script(p, "uptime", nil)
	addrs := make([]string, n)
	for i, t := range targets.Targets {
		addrs[i] = t.Addr
	}
	dir := b.TempDir()
	keyFile := filepath.Join(dir, "id")
	if err := os.WriteFile(keyFile, targets.PrivateKeyPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	var hostsFile, inventory strings.Builder
	for i, a := range addrs {
		host, port, _ := strings.Cut(a, ":")
		fmt.Fprintf(&hostsFile, "%s@%s:%s\n", targets.User, host, port)
		fmt.Fprintf(&inventory, "h%d ansible_host=%s ansible_port=%s\n", i, host, port)
	}
	must(b, os.WriteFile(filepath.Join(dir, "hosts"), []byte(hostsFile.String()), 0o644))
	must(b, os.WriteFile(filepath.Join(dir, "inventory"), []byte(inventory.String()), 0o644))
	sshOpts := "-i " + keyFile + " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o KexAlgorithms=curve25519-sha256"

	var tOps, tRaw, tPssh, tAnsible time.Duration
	for range b.N {
		// opsflow, end to end through the API.
		start := time.Now()
		res := e.do(http.MethodPost, "/api/v1/jobs", "operator", map[string]any{"script_id": script, "credential_id": cred,
			"targets": map[string]any{"hosts": addrs}, "policy": map[string]any{"concurrency": strconv.Itoa(conc)}})
		var j jobResp
		res.json(b, &j)
		if res.Status != 201 {
			b.Fatalf("job: %d %s", res.Status, res.Body)
		}
		for {
			cur := e.job(j.ID)
			if cur.Status == "succeeded" {
				break
			}
			if cur.Status == "failed" || cur.Status == "aborted" || time.Since(start) > 10*time.Minute {
				b.Fatalf("job %+v", cur)
			}
			time.Sleep(50 * time.Millisecond)
		}
		tOps += time.Since(start)

		// The floor: raw x/crypto/ssh at the same concurrency.
		start = time.Now()
		rawFanout(b, targets.ClientConfig(), addrs, conc)
		tRaw += time.Since(start)

		start = time.Now()
		out, err := exec.Command(pssh, "-p", strconv.Itoa(conc), "-t", "300", "-h", filepath.Join(dir, "hosts"), "-x", sshOpts, "uptime").CombinedOutput()
		if err != nil || strings.Count(string(out), "[SUCCESS]") != n {
			b.Fatalf("parallel-ssh: %v %.2000s", err, out)
		}
		tPssh += time.Since(start)

		start = time.Now()
		cmd := exec.Command(ansible, "all", "-i", filepath.Join(dir, "inventory"), "-m", "command", "-a", "uptime", "-f", strconv.Itoa(conc),
			"-u", targets.User, "--private-key", keyFile)
		cmd.Env = append(os.Environ(), "ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_SSH_ARGS=-o KexAlgorithms=curve25519-sha256 -o UserKnownHostsFile=/dev/null",
			"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "ansible-tmp"), "ANSIBLE_PYTHON_INTERPRETER=auto_silent")
		out, err = cmd.CombinedOutput()
		if err != nil || strings.Count(string(out), "CHANGED") != n {
			b.Fatalf("ansible: %v %.2000s", err, out)
		}
		tAnsible += time.Since(start)
	}
	div := float64(b.N)
	ops, raw, ps, an := tOps.Seconds()/div, tRaw.Seconds()/div, tPssh.Seconds()/div, tAnsible.Seconds()/div
	rss := peakRSSMB(worker.Process.Pid)
	b.ReportMetric(ops, "opsflow-s")
	b.ReportMetric(raw, "raw-s")
	b.ReportMetric(ps, "pssh-s")
	b.ReportMetric(an, "ansible-s")
	b.ReportMetric(ops/raw, "opsflow/raw")
	b.ReportMetric(ps/ops, "pssh/opsflow")
	b.ReportMetric(an/ops, "ansible/opsflow")
	b.ReportMetric(rss, "worker-peak-rss-MB")
	b.Logf("\n| N=%d, concurrency %d | wall s | vs raw |\n|---|---|---|\n| raw x/crypto/ssh | %.2f | 1.00 |\n| opsflow (API, stored) | %.2f | %.2f |\n| parallel-ssh | %.2f | %.2f |\n| ansible -m command | %.2f | %.2f |\nworker peak RSS %.0f MB",
		n, conc, raw, ops, ops/raw, ps, ps/raw, an, an/raw, rss)
}

func rawFanout(b *testing.B, cfg *ssh.ClientConfig, addrs []string, conc int) {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, a := range addrs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := func() error {
				c, err := ssh.Dial("tcp", a, cfg)
				if err != nil {
					return err
				}
				defer c.Close()
				s, err := c.NewSession()
				if err != nil {
					return err
				}
				defer s.Close()
				_, err = s.Output("uptime")
				return err
			}()
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("raw fan-out: %v", firstErr)
	}
}

// peakRSSMB reads a process's peak resident set (VmHWM).
func peakRSSMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return -1
}

func must(b *testing.B, err error) {
	if err != nil {
		b.Fatal(err)
	}
}
