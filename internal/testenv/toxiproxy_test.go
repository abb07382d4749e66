package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// echo is a proxy in front of a server that answers every request with
// its body, and a client of its own, all stopped with the test. The test
// fails if any of their goroutines outlive it.
type echo struct {
	*Proxy
	client  *http.Client
	payload []byte
}

func newEcho(t *testing.T) *echo {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	p := NewProxy(t, srv.Listener.Addr().String())
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	return &echo{Proxy: p, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, payload: payload}
}

// post sends the payload through the proxy and returns the reply.
func (e *echo) post() ([]byte, error) {
	resp, err := e.client.Post(e.URL(), "application/octet-stream", bytes.NewReader(e.payload))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func (e *echo) mustEcho(t *testing.T) {
	t.Helper()
	got, err := e.post()
	if err != nil {
		t.Fatalf("POST through proxy: %v", err)
	}
	if !bytes.Equal(got, e.payload) {
		t.Fatalf("POST through proxy: got %d bytes back, want the %d sent", len(got), len(e.payload))
	}
}

func TestProxyPassesData(t *testing.T) {
	e := newEcho(t)
	if !strings.HasPrefix(e.Addr(), "127.0.0.1:") || e.URL() != "http://"+e.Addr() {
		t.Fatalf("Addr() = %q, URL() = %q", e.Addr(), e.URL())
	}
	e.mustEcho(t)
	e.mustEcho(t)
}

func TestProxyDownRefusesAndUpRestores(t *testing.T) {
	e := newEcho(t)
	e.mustEcho(t)

	e.Down()
	e.Down() // twice is harmless
	// The client's pooled connection was closed under it: the request
	// fails one way or another, and at once.
	start := time.Now()
	if _, err := e.post(); err == nil {
		t.Fatal("POST on a pooled connection while down: no error")
	}
	e.client.Transport.(*http.Transport).CloseIdleConnections()
	_, err := e.post()
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("POST on a new connection while down: got %v, want connection refused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("POSTs while down took %v to fail, want them refused at once", d)
	}

	e.Up()
	e.Up()
	e.mustEcho(t)

	e.Latency(time.Millisecond)
	e.Down()
	e.Clear()
	e.client.Transport.(*http.Transport).CloseIdleConnections()
	e.mustEcho(t)
}

// TestProxyKeepsPortWhileDown checks that nothing else can take the port
// between Down and Up. A socket bound without SO_REUSEADDR stands in for
// the listeners and outgoing connections the kernel would otherwise hand
// the free port to.
func TestProxyKeepsPortWhileDown(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the proxy holds its port on Linux only")
	}
	e := newEcho(t)
	e.Down()
	ap, err := netip.ParseAddrPort(e.Addr())
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = unix.Bind(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
	if !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("bind %s while the proxy is down: got %v, want EADDRINUSE", e.Addr(), err)
	}
	e.Up()
	e.mustEcho(t)
}

func TestProxyDownCutsOpenConnections(t *testing.T) {
	e := newEcho(t)
	conn, err := net.Dial("tcp", e.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A full exchange first, so the connection is known to be through the
	// proxy to the server and idle, not waiting in the listen queue.
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read reply through proxy: %v", err)
	}
	resp.Body.Close()

	e.Down()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := br.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read on an open connection after Down: %d bytes, %v; want it closed", n, err)
	}
}

func TestProxyLatency(t *testing.T) {
	e := newEcho(t)
	e.Latency(200 * time.Millisecond)
	start := time.Now()
	e.mustEcho(t)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("POST with 200ms latency took %v", d)
	}
	e.Latency(100 * time.Millisecond) // replaces, does not add a second
	e.Latency(0)
	e.mustEcho(t)
}

func TestProxyResetPeer(t *testing.T) {
	e := newEcho(t)
	e.ResetPeer(50 * time.Millisecond)
	start := time.Now()
	_, err := e.post()
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("POST with ResetPeer: got %v, want connection reset", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("POST with ResetPeer(50ms) failed after %v", d)
	}
	e.Clear()
	e.mustEcho(t)
}

func TestProxyLimitData(t *testing.T) {
	e := newEcho(t)
	e.LimitData(1000)
	got, err := e.post()
	if err == nil {
		t.Fatalf("POST of %d bytes with LimitData(1000): got %d bytes back and no error", len(e.payload), len(got))
	}
	e.Clear()
	e.mustEcho(t)
}

func TestProxyStall(t *testing.T) {
	e := newEcho(t)
	e.Stall()
	e.client.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := e.post()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("POST with Stall: got %v, want a client timeout", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("POST with Stall failed after %v, before the client's timeout", d)
	}
	e.Clear()
	e.client.Timeout = 10 * time.Second
	e.mustEcho(t)
}

// TestProxyReleasesGoroutines covers the ways a connection ends with data
// still in flight inside the proxy; newEcho fails the test if any of the
// proxy's goroutines outlive it.
func TestProxyReleasesGoroutines(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, e *echo)
	}{
		{"client abandons download", func(t *testing.T, e *echo) {
			resp, err := e.client.Post(e.URL(), "application/octet-stream", bytes.NewReader(e.payload))
			if err != nil {
				t.Fatal(err)
			}
			io.ReadFull(resp.Body, make([]byte, 100))
			resp.Body.Close()
		}},
		{"client times out under latency", func(t *testing.T, e *echo) {
			e.Latency(50 * time.Millisecond)
			e.client.Timeout = 80 * time.Millisecond
			e.post()
		}},
		{"down mid-transfer", func(t *testing.T, e *echo) {
			e.Latency(30 * time.Millisecond)
			done := make(chan struct{})
			go func() {
				defer close(done)
				e.post()
			}()
			time.Sleep(80 * time.Millisecond)
			e.Down()
			<-done
		}},
		{"faults changed mid-transfer", func(t *testing.T, e *echo) {
			e.Latency(20 * time.Millisecond)
			e.client.Timeout = 2 * time.Second
			done := make(chan struct{})
			go func() {
				defer close(done)
				e.post()
			}()
			time.Sleep(40 * time.Millisecond)
			e.LimitData(1 << 30)
			e.Latency(0)
			e.ResetPeer(time.Hour)
			e.Clear()
			<-done
		}},
		{"reset then cleanup", func(t *testing.T, e *echo) {
			e.ResetPeer(time.Hour)
			go e.post()
			time.Sleep(50 * time.Millisecond)
		}},
		{"stall then cleanup", func(t *testing.T, e *echo) {
			e.Stall()
			go e.post()
			time.Sleep(50 * time.Millisecond)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newEcho(t))
		})
	}
}

func TestProxyOnRealServer(t *testing.T) {
	srv := S3(t)
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatalf("parse %s: %v", srv.Endpoint, err)
	}
	bucket := Bucket(t, srv)
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	p := NewProxy(t, u.Host)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	health := func() error {
		resp, err := client.Get(p.URL() + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	if err := health(); err != nil {
		t.Fatalf("GET /health on %s through proxy: %v", srv.Endpoint, err)
	}
	p.Down()
	tr.CloseIdleConnections()
	if err := health(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("GET /health through proxy while down: got %v, want connection refused", err)
	}
	p.Up()
	if err := health(); err != nil {
		t.Fatalf("GET /health through proxy after Up: %v", err)
	}

	// A signed request goes through too (the proxy's address is what the
	// client signs and what the server sees), and a connection cut in the
	// middle of a PUT fails it.
	s3c := s3.New(s3.Options{
		BaseEndpoint:               aws.String(p.URL()),
		Region:                     srv.Region,
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		HTTPClient:                 client,
		RetryMaxAttempts:           1,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	body := bytes.Repeat([]byte("x"), 1<<20)
	put := func() error {
		_, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: aws.String(bucket),
			Key:    aws.String("obj"),
			Body:   bytes.NewReader(body),
		})
		return err
	}
	p.LimitData(64 << 10)
	if err := put(); err == nil {
		t.Fatal("PUT of 1 MiB through a connection cut after 64 KiB: no error")
	}
	p.Clear()
	tr.CloseIdleConnections()
	if err := put(); err != nil {
		t.Fatalf("PUT through proxy after Clear: %v", err)
	}
}
