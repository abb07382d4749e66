package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Proxy is a TCP proxy on a loopback port in front of an upstream server,
// with network faults the test switches on and off. It is Toxiproxy run
// inside the test process: no binary and no API server.
//
// Faults apply per direction of each connection, to connections already
// open as well as to new ones, except where a method says otherwise.
// Call the methods from the test's goroutine: they end the test on failure.
//
// The faults are this package's own toxics rather than Toxiproxy's stock
// ones, which leave goroutines blocked for ever whenever one side of a
// connection goes away while data is in flight (a client giving up, Down
// in the middle of a transfer, limit_data or reset_peer cutting a
// connection). Those would fail goleak in whichever test used the proxy.
// Every goroutine the proxy starts ends shortly after t.Cleanup stops it,
// so goleak needs no exceptions, provided it runs after that cleanup
// (goleak.VerifyTestMain, or goleak.VerifyNone in a t.Cleanup registered
// before NewProxy; a deferred VerifyNone runs too early).
type Proxy struct {
	t        testing.TB
	addr     string
	upstream string
	proxy    *toxiproxy.Proxy

	mu    sync.Mutex
	hold  int            // descriptor reserving the port; -1 when none
	added []toxics.Toxic // every toxic ever added, to release at cleanup
}

// NewProxy starts a proxy on a free loopback port in front of upstream
// ("127.0.0.1:PORT"). t.Cleanup stops it and closes its connections.
func NewProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p := &Proxy{t: t, upstream: upstream, hold: -1}
	listen := "127.0.0.1:0"
	if runtime.GOOS == "linux" {
		fd, port, err := reservePort()
		if err != nil {
			t.Fatalf("reserve a loopback port for the proxy to %s: %v", upstream, err)
		}
		p.hold = fd
		listen = fmt.Sprintf("127.0.0.1:%d", port)
	}
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p.proxy = toxiproxy.NewProxy(server, "testenv", listen, upstream)
	t.Cleanup(p.close)
	// Before Start, so that no connection ever runs without one: see pass.
	for _, s := range both {
		p.add("guard_"+s, guardType, s, 1, nil)
	}
	if err := p.proxy.Start(); err != nil {
		t.Fatalf("start proxy on %s to %s: %v", listen, upstream, err)
	}
	// Start has returned, so the proxy's goroutine has written the address
	// it listens on and will not write it again until the next Start.
	p.addr = p.proxy.Listen
	return p
}

// reservePort binds a TCP socket to a free loopback port without listening
// on it. The proxy keeps it for its whole life.
//
// Down closes the proxy's listener and Up opens it again on the same port.
// Between the two the port would be free, and a listener or an outgoing
// connection elsewhere in the test binary could be given it: Up would then
// fail, or a client would reach a stranger. On Linux a bound socket keeps
// the port out of the kernel's free pool while still letting a listener
// with SO_REUSEADDR (Go sets it on every listener) bind the same address,
// and a connection to a port with no listener is refused, as from a dead
// server.
func reservePort() (fd, port int, err error) {
	// Under ForkLock, as the net package does where sockets cannot be
	// created close-on-exec, so a child process started meanwhile by
	// another test does not inherit the port.
	syscall.ForkLock.RLock()
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, 0, err
	}
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	}
	var sa unix.Sockaddr
	if err == nil {
		sa, err = unix.Getsockname(fd)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, sa.(*unix.SockaddrInet4).Port, nil
}

func (p *Proxy) close() {
	p.proxy.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	// Every connection is closed now, so whatever the toxics still hold
	// has nowhere to go.
	for _, tx := range p.added {
		if s, ok := tx.(interface{ stop() }); ok {
			s.stop()
		}
	}
	if p.hold >= 0 {
		unix.Close(p.hold)
		p.hold = -1
	}
}

// Addr is the "127.0.0.1:PORT" clients should dial instead of upstream.
func (p *Proxy) Addr() string { return p.addr }

// URL is "http://" + Addr().
func (p *Proxy) URL() string { return "http://" + p.addr }

// Down makes the upstream look like a server whose process died: the
// proxy stops listening, so new connections are refused (the kernel
// answers the SYN with RST: ECONNREFUSED), and it closes both sockets of
// every open connection, as the kernel does for a dead process (FIN, or
// RST where data was left unread), so a client waiting on one reads EOF
// or ECONNRESET and a client writing gets EPIPE or ECONNRESET. Faults stay
// set for Up.
func (p *Proxy) Down() { p.proxy.Stop() }

// Up undoes Down: the proxy listens again on the same address.
func (p *Proxy) Up() {
	p.t.Helper()
	if err := p.proxy.Start(); err != nil && !errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		p.t.Fatalf("restart proxy on %s to %s: %v", p.addr, p.upstream, err)
	}
}

// Latency delays data by d in each direction, so a request and its reply
// each arrive d late. It replaces any latency set before; 0 removes it.
// d is rounded down to milliseconds.
func (p *Proxy) Latency(d time.Duration) {
	p.t.Helper()
	p.removeNamed("latency_")
	if d > 0 {
		for _, s := range both {
			p.add("latency_"+s, latencyType, s, 1, map[string]any{"latency": d.Milliseconds()})
		}
	}
}

// ResetPeer makes connections fail with a TCP reset, as Toxiproxy's
// reset_peer does: the first data the upstream sends back on a connection
// is dropped, and after that much time the connection is torn down on
// both sides. The upstream has received the request and may have acted on
// it; the client sees its connection reset (ECONNRESET). Only connections
// opened after the call get RST; ones already open are closed with FIN
// instead, so a client reading one sees EOF. after is rounded down to
// milliseconds.
func (p *Proxy) ResetPeer(after time.Duration) {
	p.t.Helper()
	p.removeNamed("reset_")
	// Toxiproxy sets SO_LINGER to 0, which makes closing a socket send RST,
	// only on connections that start while its own reset_peer toxic is in
	// their chain. At toxicity 0 that toxic passes all data untouched: it
	// is there for the linger, in front of the toxic that does the work,
	// which goes on draining it once the connection is cut.
	p.add("reset_linger", "reset_peer", "downstream", 0, map[string]any{"timeout": 0})
	p.add("reset_downstream", resetType, "downstream", 1, map[string]any{"timeout": after.Milliseconds()})
}

// Stall makes connections accept data and deliver nothing, either way, and
// close nothing: a half-dead connection, as when the peer vanished behind
// a network partition. Only the client's own timeout gets it out. Clear
// closes the connections it stalled, since their data was lost.
func (p *Proxy) Stall() {
	p.t.Helper()
	p.removeNamed("stall_")
	for _, s := range both {
		p.add("stall_"+s, stallType, s, 1, nil)
	}
}

// LimitData closes each connection once n bytes have passed through it in
// either direction (counted from the call for connections already open):
// a connection dying in the middle of an upload or of a download. The
// close is a FIN, so the reader sees the stream end early.
func (p *Proxy) LimitData(n int64) {
	p.t.Helper()
	p.removeNamed("limit_")
	for _, s := range both {
		p.add("limit_"+s, limitType, s, 1, map[string]any{"bytes": n})
	}
}

// Clear removes every fault and brings the proxy up.
func (p *Proxy) Clear() {
	p.t.Helper()
	p.removeNamed("")
	p.Up()
}

var both = []string{"upstream", "downstream"}

// removeNamed removes the toxics whose names start with prefix, apart from
// the guards.
//
// It goes from the end of each chain back. Removing a toxic interrupts the
// stub before it too, and the stock reset_peer that ResetPeer puts in
// front of its own toxic cannot be interrupted while it is blocked handing
// data on; with the toxic after it gone first, Toxiproxy takes that data
// itself.
func (p *Proxy) removeNamed(prefix string) {
	p.t.Helper()
	all := p.proxy.Toxics.GetToxicArray()
	for i := len(all) - 1; i >= 0; i-- {
		w := all[i].(*toxics.ToxicWrapper)
		if strings.HasPrefix(w.Name, prefix) && w.Type != guardType {
			p.remove(w.Name)
		}
	}
}

func (p *Proxy) remove(name string) {
	p.t.Helper()
	if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		p.t.Fatalf("remove toxic %s from the proxy for %s: %v", name, p.upstream, err)
	}
}

func (p *Proxy) add(name, typ, stream string, toxicity float32, attrs map[string]any) {
	p.t.Helper()
	spec, err := json.Marshal(map[string]any{
		"name":       name,
		"type":       typ,
		"stream":     stream,
		"toxicity":   toxicity,
		"attributes": attrs,
	})
	if err != nil {
		p.t.Fatalf("encode toxic %s: %v", name, err)
	}
	w, err := p.proxy.Toxics.AddToxicJson(bytes.NewReader(spec))
	if err != nil {
		p.t.Fatalf("add toxic %s to the proxy for %s: %v", name, p.upstream, err)
	}
	p.mu.Lock()
	p.added = append(p.added, w.Toxic)
	p.mu.Unlock()
}

// The toxics below replace Toxiproxy's stock ones. Each direction of a
// connection is a chain of stubs, one goroutine each, passing chunks down
// unbuffered channels from a reader goroutine to a writer goroutine, and a
// stock toxic blocks without limit on its next channel. When the writer
// fails (its socket closed under it) it stops reading, and the stub holding
// a chunk, every stub before it and the reader then wait for ever; when
// limit_data or reset_peer close their stub they stop reading too, with
// the same result. Here a toxic gives up sending when the proxy is closed,
// and a toxic that cuts a connection keeps reading and dropping what comes
// until the reader closes the chain. The pass toxic sits first in every
// chain, so Toxiproxy's hidden noop stub in front of it is never the last.
const (
	guardType   = "testenv_pass"
	latencyType = "testenv_latency"
	resetType   = "testenv_reset_peer"
	stallType   = "testenv_stall"
	limitType   = "testenv_limit_data"
)

func init() {
	toxics.Register(guardType, new(pass))
	toxics.Register(latencyType, new(latency))
	toxics.Register(resetType, new(resetPeer))
	toxics.Register(stallType, new(stall))
	toxics.Register(limitType, new(limitData))
}

// releaser is shared by a toxic's stubs on every connection and closed
// when the proxy is.
type releaser struct {
	once sync.Once
	ch   chan struct{}
}

func (r *releaser) done() <-chan struct{} {
	r.once.Do(func() { r.ch = make(chan struct{}) })
	return r.ch
}

func (r *releaser) stop() {
	r.done()
	close(r.ch)
}

// send passes c on and reports whether the stub should keep going.
//
// A stub is interrupted while a toxic is added or removed, and must return
// for the chain to be rewired. If that happens while the writer is slow or
// gone, send waits as long as Toxiproxy itself does when it flushes a
// removed toxic's buffer, and then drops the chunk: a writer that has not
// taken data for that long is dead. Without the bound, a writer dying just
// as a toxic is added would deadlock the test: Toxiproxy holds the lock
// the dying writer needs to unregister while it waits for this stub.
func (r *releaser) send(s *toxics.ToxicStub, c *stream.StreamChunk) (more bool) {
	select {
	case s.Output <- c:
		return true
	case <-r.done():
		cut(s)
		return false
	case <-s.Interrupt:
		s.WriteOutput(c, 5*time.Second)
		return false
	}
}

// cut ends this direction of the connection: the writer sees the end of
// its stream and closes its socket. The stub then drops everything it is
// given until the reader closes the chain, which it does once the socket
// it reads fails, so that no stub before this one waits for ever.
// Interrupts are not taken any more: Toxiproxy does not rewire a closed
// stub.
func cut(s *toxics.ToxicStub) {
	s.Close()
	for range s.Input {
	}
}

// next waits for the next chunk: nil if the stub was interrupted or its
// input ended, in which case the stub must return.
func next(s *toxics.ToxicStub) *stream.StreamChunk {
	select {
	case <-s.Interrupt:
		return nil
	case c := <-s.Input:
		if c == nil {
			s.Close()
		}
		return c
	}
}

// pass forwards data untouched.
type pass struct{ releaser }

func (t *pass) Pipe(s *toxics.ToxicStub) {
	for c := next(s); c != nil && t.send(s, c); c = next(s) {
	}
}

// latency delays each chunk until Latency milliseconds after it was read.
type latency struct {
	releaser
	Latency int64 `json:"latency"`
}

// GetBufferSize lets the reader run ahead while chunks wait, as the stock
// latency toxic does, so latency does not also throttle throughput.
func (t *latency) GetBufferSize() int { return 1024 }

func (t *latency) Pipe(s *toxics.ToxicStub) {
	for c := next(s); c != nil; c = next(s) {
		wait := time.NewTimer(time.Duration(t.Latency)*time.Millisecond - time.Since(c.Timestamp))
		select {
		case <-wait.C:
		case <-s.Interrupt:
			wait.Stop()
			s.WriteOutput(c, 5*time.Second)
			return
		case <-t.done():
			wait.Stop()
			cut(s)
			return
		}
		if !t.send(s, c) {
			return
		}
	}
}

// resetPeer drops everything from the first chunk on and Timeout
// milliseconds after that chunk cuts the connection, which is reset if a
// stock reset_peer toxic set it to linger 0 (see Proxy.ResetPeer).
//
// The stock toxic stops reading while it waits; this one goes on reading
// and dropping, which the client cannot tell apart, because the stock
// reset_peer in front of it blocks unconditionally on a full channel and
// would hold up for the whole wait a test that removes it.
type resetPeer struct {
	releaser
	Timeout int64 `json:"timeout"`
}

type resetState struct{ at time.Time }

func (t *resetPeer) NewState() any { return new(resetState) }

// Pipe keeps the time of the reset in the connection's state, so that an
// interrupt while it waits (a toxic added or removed meanwhile) does not
// delay the reset.
func (t *resetPeer) Pipe(s *toxics.ToxicStub) {
	st := s.State.(*resetState)
	if st.at.IsZero() {
		if next(s) == nil {
			return
		}
		st.at = time.Now().Add(time.Duration(t.Timeout) * time.Millisecond)
	}
	wait := time.NewTimer(time.Until(st.at))
	defer wait.Stop()
	in := s.Input
	for {
		select {
		case <-s.Interrupt:
			return
		case c := <-in:
			if c == nil {
				in = nil // the reader is done; the reset still comes on time
			}
		case <-wait.C:
			cut(s)
			return
		case <-t.done():
			cut(s)
			return
		}
	}
}

// Cleanup runs when the toxic is removed: once it has dropped data, see
// cutOnRemoval.
func (t *resetPeer) Cleanup(s *toxics.ToxicStub) {
	if !s.State.(*resetState).at.IsZero() {
		cutOnRemoval(s)
	}
}

// cutOnRemoval cuts a connection whose data a removed toxic dropped,
// rather than let it resume with a hole in its stream that the client
// might not notice. Toxiproxy leaves the closed stub in the chain, so it
// is drained from a goroutine of its own, which ends with the connection.
func cutOnRemoval(s *toxics.ToxicStub) {
	s.Close()
	go cut(s)
}

// stall drops everything and never closes.
type stall struct{}

func (t *stall) Pipe(s *toxics.ToxicStub) {
	for next(s) != nil {
	}
}

// Cleanup runs when the toxic is removed: see cutOnRemoval.
func (t *stall) Cleanup(s *toxics.ToxicStub) { cutOnRemoval(s) }

// limitData passes Bytes bytes per connection and direction, then cuts the
// connection.
type limitData struct {
	releaser
	Bytes int64 `json:"bytes"`
}

type limitState struct{ sent int64 }

func (t *limitData) NewState() any { return new(limitState) }

func (t *limitData) Pipe(s *toxics.ToxicStub) {
	st := s.State.(*limitState)
	for st.sent < t.Bytes {
		c := next(s)
		if c == nil {
			return
		}
		if left := t.Bytes - st.sent; int64(len(c.Data)) > left {
			c = &stream.StreamChunk{Data: c.Data[:left], Timestamp: c.Timestamp}
		}
		st.sent += int64(len(c.Data))
		if !t.send(s, c) {
			return
		}
	}
	cut(s)
}
