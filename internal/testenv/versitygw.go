package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// PrivateS3 is a versitygw server of one test's own, for tests that stop
// and start the real server under ferry: the shared one serves every other
// test at the same time. It keeps its port and its data across a restart.
type PrivateS3 struct {
	S3Server
	t    testing.TB
	bin  string
	dir  string
	port int
	hold int // descriptor reserving the port; see reservePort
	cmd  *exec.Cmd
	// exited is closed once the running server's process is reaped.
	exited chan struct{}
}

// StartPrivateS3 starts versitygw (from PATH, where scripts/test installs
// it) on a free loopback port with its data in a temporary directory.
// t.Cleanup stops it.
func StartPrivateS3(t testing.TB) *PrivateS3 {
	t.Helper()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		Missing(t, "the versitygw binary on PATH")
	}
	fd, port, err := reservePort()
	if err != nil {
		t.Fatalf("reserve a loopback port for versitygw: %v", err)
	}
	s := &PrivateS3{
		S3Server: S3Server{
			Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
			AccessKey: "private", SecretKey: "privatesecret", Region: "us-east-1",
		},
		t: t, bin: bin, dir: t.TempDir(), port: port, hold: fd,
	}
	t.Cleanup(func() {
		s.Stop()
		unix.Close(s.hold)
	})
	s.Start()
	return s
}

// Start starts the server (again) and returns once it answers its health
// check.
func (s *PrivateS3) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("versitygw is already running")
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "versitygw.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	data := filepath.Join(s.dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, "--port", fmt.Sprintf("127.0.0.1:%d", s.port), "--health", "/health", "--keep-alive", "posix", data)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start versitygw: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(s.Endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(filepath.Join(s.dir, "versitygw.log"))
			s.t.Fatalf("versitygw exited at start:\n%s", out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("versitygw on port %d not healthy after 30s", s.port)
		}
	}
}

// Stop kills the server, as a crash or a network outage would take it
// away, and waits until it is gone.
func (s *PrivateS3) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.exited = nil, nil
}
