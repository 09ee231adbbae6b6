package hub_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch/hub"
	"go.uber.org/goleak"
)

// The hostile-input suite: every input here comes from a peer that does not
// play by the rules. Each gets a clear refusal or error, and the hub keeps
// serving the well-behaved client that is connected throughout.

// noLeak checks, after every other cleanup of the test, that no goroutine
// and no file descriptor the test opened is left (descriptors where the
// system lists them).
func noLeak(t *testing.T) {
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close() // the network poller's descriptors exist before counting
	}
	ignore := goleak.IgnoreCurrent()
	before := fds()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore)
		for deadline := time.Now().Add(10 * time.Second); fds() > before; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%d file descriptors open after the test, %d before", fds(), before)
				return
			}
		}
	})
}

// fds counts the open file descriptors of the process (0 where /proc does
// not list them).
func fds() int {
	if runtime.GOOS != "linux" {
		return 0
	}
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// bystander is a well-behaved client that must keep being served.
func bystander(t *testing.T, srv *httptest.Server) *client {
	t.Helper()
	c, _ := dial(t, srv)
	c.subscribe(hub.Request{Topics: []string{"logs"}})
	return c
}

// stillServed checks that c gets answers.
func stillServed(t *testing.T, c *client) {
	t.Helper()
	ref := json.RawMessage(`"still-there"`)
	c.send(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"logs"}, Ref: ref})
	m := c.skipUntil(hub.TypeSubscribed, nil)
	if string(m.Ref) != string(ref) {
		t.Fatalf("answer ref %s", m.Ref)
	}
}

// rawWS performs the opening handshake by hand over TCP, so that the test can
// then write frames no library would.
func rawWS(t *testing.T, srv *httptest.Server, query string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /start%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", query, srv.Listener.Addr())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake answered %d", resp.StatusCode)
	}
	return c, br
}

// asIs is frame's declared length that means the payload's own.
const asIs = -1

// frame encodes one WebSocket frame as a client would (masked unless
// unmasked), with the header's payload length set to declared unless it is
// asIs (to lie about it).
func frame(fin bool, rsv, op byte, unmasked bool, payload []byte, declared int64) []byte {
	var b bytes.Buffer
	first := op | rsv<<4
	if fin {
		first |= 0x80
	}
	b.WriteByte(first)
	n := int64(len(payload))
	if declared != asIs {
		n = declared
	}
	maskBit := byte(0x80)
	if unmasked {
		maskBit = 0
	}
	switch {
	case n >= 0 && n < 126:
		b.WriteByte(maskBit | byte(n))
	case n >= 0 && n < 1<<16:
		b.WriteByte(maskBit | 126)
		binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		b.WriteByte(maskBit | 127)
		binary.Write(&b, binary.BigEndian, uint64(n))
	}
	if unmasked {
		b.Write(payload)
		return b.Bytes()
	}
	var key [4]byte
	rand.Read(key[:])
	b.Write(key[:])
	for i, c := range payload {
		b.WriteByte(c ^ key[i%4])
	}
	return b.Bytes()
}

// readServerFrame reads one (unmasked) server frame.
func readServerFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		var l uint16
		err = binary.Read(br, binary.BigEndian, &l)
		n = int64(l)
	case 127:
		var l uint64
		err = binary.Read(br, binary.BigEndian, &l)
		n = int64(l)
	}
	if err != nil {
		return 0, nil, err
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(br, payload)
	return h[0] & 0x0f, payload, err
}

// serverEnd reads server frames until the close frame, and returns its code
// (-1: the connection ended without one) and the text frames before it.
func serverEnd(t *testing.T, c net.Conn, br *bufio.Reader) (code int, texts []string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(readTimeout))
	for {
		op, payload, err := readServerFrame(br)
		switch {
		case err != nil:
			return -1, texts
		case op == websocket.CloseMessage:
			if len(payload) < 2 {
				return websocket.CloseNoStatusReceived, texts
			}
			return int(binary.BigEndian.Uint16(payload)), texts
		case op == websocket.TextMessage:
			texts = append(texts, string(payload))
		}
	}
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// TestHostileFrames writes malformed and oversized frames on a raw socket:
// the hub closes that socket with the code RFC 6455 gives (1002 protocol
// error, 1009 too big), or answers an error frame when the frame is valid
// but its content is not, and keeps serving the bystander either way.
func TestHostileFrames(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 2000)
	for _, tc := range []struct {
		name   string
		frames [][]byte
		opts   *hub.Options
		// wantCode is the close code the attacker must get; 0 means the
		// socket stays open and wantError is the error code of the answer.
		wantCode  int
		wantError string
		// late: the bystander comes after the attack (it would not answer
		// the hub's pings in time during it)
		late bool
	}{
		{name: "unmasked client frame", frames: [][]byte{frame(true, 0, websocket.TextMessage, true, []byte(`{"action":"subscribe"}`), asIs)}, wantCode: websocket.CloseProtocolError},
		{name: "reserved bit without an extension", frames: [][]byte{frame(true, 4, websocket.TextMessage, false, []byte(`{}`), asIs)}, wantCode: websocket.CloseProtocolError},
		{name: "unknown opcode", frames: [][]byte{frame(true, 0, 3, false, []byte("?"), asIs)}, wantCode: websocket.CloseProtocolError},
		{name: "fragmented ping", frames: [][]byte{frame(false, 0, websocket.PingMessage, false, []byte("p"), asIs)}, wantCode: websocket.CloseProtocolError},
		{name: "ping payload over 125 bytes", frames: [][]byte{frame(true, 0, websocket.PingMessage, false, big[:126], asIs)}, wantCode: websocket.CloseProtocolError},
		{name: "continuation without a first fragment", frames: [][]byte{frame(true, 0, 0, false, []byte("x"), asIs)}, wantCode: websocket.CloseProtocolError},
		{name: "new message inside a fragmented one", frames: [][]byte{
			frame(false, 0, websocket.TextMessage, false, []byte(`{"act`), asIs),
			frame(true, 0, websocket.TextMessage, false, []byte(`{}`), asIs),
		}, wantCode: websocket.CloseProtocolError},
		{name: "close code that may not be sent", frames: [][]byte{frame(true, 0, websocket.CloseMessage, false, closePayload(1005, ""), asIs)}, wantCode: websocket.CloseProtocolError},
		// gorilla takes a one-byte close payload for no status at all (1005)
		// rather than a protocol error: the socket is closed either way.
		{name: "close frame of one byte", frames: [][]byte{frame(true, 0, websocket.CloseMessage, false, []byte{3}, asIs)}, wantCode: websocket.CloseNoStatusReceived},
		{name: "close reason not UTF-8", frames: [][]byte{frame(true, 0, websocket.CloseMessage, false, closePayload(1000, "\xff\xfe"), asIs)}, wantCode: websocket.CloseProtocolError},
		{name: "length with the top bit set", frames: [][]byte{frame(true, 0, websocket.TextMessage, false, nil, -1<<63)}, wantCode: websocket.CloseMessageTooBig},
		{name: "declared 2^62 bytes", frames: [][]byte{frame(true, 0, websocket.TextMessage, false, nil, 1<<62)}, wantCode: websocket.CloseMessageTooBig},
		{name: "declared over MaxMessageBytes", opts: &hub.Options{MaxMessageBytes: 1024}, frames: [][]byte{frame(true, 0, websocket.TextMessage, false, big, asIs)}, wantCode: websocket.CloseMessageTooBig},
		{name: "fragments adding up over MaxMessageBytes", opts: &hub.Options{MaxMessageBytes: 1024}, frames: [][]byte{
			frame(false, 0, websocket.TextMessage, false, big[:600], asIs),
			frame(false, 0, 0, false, big[:600], asIs),
			frame(true, 0, 0, false, big[:600], asIs),
		}, wantCode: websocket.CloseMessageTooBig},
		{name: "half a frame, then silence", opts: &hub.Options{PongWait: 300 * time.Millisecond}, frames: [][]byte{frame(true, 0, websocket.TextMessage, false, big[:500], asIs)[:100]}, wantCode: -1, late: true},
		{name: "text that is not UTF-8", frames: [][]byte{frame(true, 0, websocket.TextMessage, false, []byte("{\"action\":\"\xff\xfe\"}"), asIs)}, wantError: hub.CodeUnknownAction},
		{name: "binary garbage", frames: [][]byte{frame(true, 0, websocket.BinaryMessage, false, []byte{0, 1, 2, 0xff}, asIs)}, wantError: hub.CodeBadJSON},
		{name: "deeply nested JSON", frames: [][]byte{frame(true, 0, websocket.TextMessage, false, []byte(strings.Repeat("[", 20000)+strings.Repeat("]", 20000)), asIs)}, wantError: hub.CodeBadJSON},
		{name: "JSON with a huge number", frames: [][]byte{frame(true, 0, websocket.TextMessage, false, []byte(`{"action":"closeConnection","id":1e999}`), asIs)}, wantError: hub.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeak(t)
			opts := tc.opts
			if opts == nil {
				opts = &hub.Options{}
			}
			h, srv := setup(t, &memSource{}, opts)
			var good *client
			if !tc.late {
				good = bystander(t, srv)
			}
			c, br := rawWS(t, srv, "?token=s3cret")
			for _, f := range tc.frames {
				if _, err := c.Write(f); err != nil {
					break // the hub may have hung up already
				}
			}
			if tc.wantCode == 0 {
				// The frame was read; its content is answered with an error
				// and the socket stays open.
				c.SetReadDeadline(time.Now().Add(readTimeout))
				var answer hub.Message
				for answer.Type != hub.TypeError {
					op, payload, err := readServerFrame(br)
					if err != nil {
						t.Fatalf("no error answer: %v", err)
					}
					if op == websocket.TextMessage {
						json.Unmarshal(payload, &answer)
					}
				}
				var e hub.Error
				json.Unmarshal(answer.Data, &e)
				if e.Code != tc.wantError {
					t.Errorf("error %+v, want code %s", e, tc.wantError)
				}
				if !utf8.ValidString(e.Message) {
					t.Errorf("error message is not valid UTF-8: %q", e.Message)
				}
				c.Write(frame(true, 0, websocket.TextMessage, false, []byte(`{"action":"getHistory","ref":1}`), asIs))
				for {
					op, payload, err := readServerFrame(br)
					if err != nil {
						t.Fatalf("socket closed after an error answer: %v", err)
					}
					if op == websocket.TextMessage && strings.Contains(string(payload), `"history"`) {
						break
					}
				}
			} else {
				code, texts := serverEnd(t, c, br)
				if code != tc.wantCode {
					t.Errorf("close code %d, want %d (frames before: %q)", code, tc.wantCode, texts)
				}
				waitFor(t, "the attacker to be dropped", func() bool { return h.Clients() == 0 || (!tc.late && h.Clients() == 1) })
			}
			if good == nil {
				good = bystander(t, srv)
			}
			stillServed(t, good)
		})
	}
}

// TestHostileSubscribeFlood floods subscribe actions. A client that sends
// them faster than it reads the answers gets them in order, until it is
// more than Options.SendQueue answers behind: then it is dropped with 1008.
// One that makes the hub replay its whole log backlog again and again
// without reading is dropped with 1008 too, and what it can hold in the hub
// is bounded by its queue.
func TestHostileSubscribeFlood(t *testing.T) {
	t.Run("reading", func(t *testing.T) {
		noLeak(t)
		h, srv := setup(t, &memSource{}, nil)
		good := bystander(t, srv)
		c, _ := dial(t, srv)
		const n = 5000
		go func() {
			for i := range n {
				if c.conn.WriteJSON(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"traffic", "logs"}, Ref: json.RawMessage(fmt.Sprint(i))}) != nil {
					return
				}
			}
		}()
		got := 0
		for got < n {
			m, raw, err := c.read()
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
					t.Fatalf("after %d answers: %v, want all %d or 1008", got, err, n)
				}
				break
			}
			if m.Type != hub.TypeSubscribed {
				continue
			}
			if string(m.Ref) != fmt.Sprint(got) {
				t.Fatalf("answer %d: %s", got, raw)
			}
			got++
		}
		t.Logf("%d of %d subscribes answered in order before the end", got, n)
		waitFor(t, "the flooder to leave or stay", func() bool { return h.Clients() == 1 || (got == n && h.Clients() == 2) })
		stillServed(t, good)
	})

	t.Run("replays, never reading", func(t *testing.T) {
		noLeak(t)
		h, srv := setup(t, &memSource{}, &hub.Options{SendQueue: 16, LogBacklog: 200})
		for i := range 200 {
			h.ObserveLog(record(uint64(i+1), slog.LevelError, strings.Repeat("log line ", 20)))
		}
		good := bystander(t, srv)
		// The attacker's socket has a small receive buffer, so that its
		// queue fills soon rather than after the kernel's autotuned buffers.
		d := websocket.Dialer{NetDialContext: smallRecvBuf}
		conn, _, err := d.Dial(wsURL(srv, "?token=s3cret"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// The dial returns once the handshake is read, which may be before the
		// hub has registered the socket.
		waitFor(t, "the hub to serve the flooder", func() bool { return h.Clients() == 2 })
		zero := uint64(0)
		req := hub.Request{Action: hub.ActionSubscribe, Topics: []string{"logs"}, LogLevel: "DEBUG", Since: &zero}
		sent := 0
		for h.Clients() == 2 && sent < 100_000 {
			conn.SetWriteDeadline(time.Now().Add(readTimeout))
			if conn.WriteJSON(req) != nil {
				break
			}
			sent++
		}
		waitFor(t, "the flooder to be dropped", func() bool { return h.Clients() == 1 })
		t.Logf("dropped after %d subscribes (each asking for a 200-record replay)", sent)
		code := -1
		conn.SetReadDeadline(time.Now().Add(readTimeout))
		for {
			_, _, err := conn.ReadMessage()
			if err == nil {
				continue
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			break
		}
		if code != websocket.ClosePolicyViolation {
			t.Errorf("flooder closed with %d, want 1008", code)
		}
		stillServed(t, good)
	})
}

// smallRecvBuf dials with a fixed receive buffer of 256 KiB: small next to
// what the kernel would autotune, yet larger than two loopback segments
// (64 KiB each). A buffer smaller than one segment (4 KiB, as this test had)
// never lets the receiver advertise a window the sender will use, so once the
// flooder reads again the hub's socket waits for zero-window probes whose
// back-off grows to seconds, and the close frame may not arrive in time.
func smallRecvBuf(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(256 << 10)
	}
	return c, nil
}

// TestHostileManySockets opens far more sockets than MaxClients at once from
// one client: exactly MaxClients are served, the others get 503 with
// Retry-After; sockets that never answer a ping are reclaimed after
// PongWait, and their places can be taken again.
func TestHostileManySockets(t *testing.T) {
	noLeak(t)
	const limit = 8
	h, srv := setup(t, &memSource{}, &hub.Options{MaxClients: limit, PongWait: 500 * time.Millisecond})
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var raws []net.Conn
	for range 5 * limit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			fmt.Fprintf(c, "GET /start?token=s3cret HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Error(err)
				c.Close()
				return
			}
			switch resp.StatusCode {
			case http.StatusSwitchingProtocols:
				ok.Add(1)
				mu.Lock()
				raws = append(raws, c) // never reads again: no pong
				mu.Unlock()
			case http.StatusServiceUnavailable:
				refused.Add(1)
				if resp.Header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				c.Close()
			default:
				t.Errorf("status %d", resp.StatusCode)
				c.Close()
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range raws {
			c.Close()
		}
	}()
	if ok.Load() != limit || refused.Load() != 4*limit {
		t.Fatalf("%d served, %d refused; want %d and %d", ok.Load(), refused.Load(), limit, 4*limit)
	}
	// None of them answers pings: they are dropped after PongWait, and a
	// real client gets in.
	waitFor(t, "silent sockets to be reclaimed", func() bool { return h.Clients() == 0 })
	stillServed(t, bystander(t, srv))
}

// TestHostileTokens tries tokens that are missing, wrong or almost right,
// and tokens in places the hub must not read them from. Every refusal is the
// same 401, whatever was wrong, and never carries the secret.
func TestHostileTokens(t *testing.T) {
	noLeak(t)
	var logs bytes.Buffer
	var logMu sync.Mutex
	h, srv := setup(t, &memSource{}, &hub.Options{ErrorLog: slog.New(slog.NewTextHandler(syncWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	good := bystander(t, srv)
	const secret = "s3cret"
	var refusals []string
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
		ok     bool
	}{
		{"none", "", nil, false},
		{"empty", "?token=", nil, false},
		{"one character off at the end", "?token=s3crex", nil, false},
		{"one character off at the start", "?token=x3cret", nil, false},
		{"one character more", "?token=s3crett", nil, false},
		{"one character less", "?token=s3cre", nil, false},
		{"other case", "?token=S3CRET", nil, false},
		{"with a space", "?token=%20s3cret", nil, false},
		{"with a NUL", "?token=s3cret%00", nil, false},
		{"twice", "?token=s3cret&token=s3cret", nil, false},
		{"other parameter name", "?access_token=s3cret", nil, false},
		{"parameter name in other case", "?Token=s3cret", nil, false},
		{"very long", "?token=" + strings.Repeat("s3cret", 10_000), nil, false},
		{"only in a Referer", "", http.Header{"Referer": {"http://127.0.0.1:8000/?token=" + secret}}, false},
		{"only in a cookie", "", http.Header{"Cookie": {"token=" + secret}}, false},
		{"as a subprotocol", "", http.Header{"Sec-Websocket-Protocol": {secret}}, false},
		{"Bearer without the secret", "", http.Header{"Authorization": {"Bearer "}}, false},
		{"Bearer glued", "", http.Header{"Authorization": {"Bearer" + secret}}, false},
		{"Basic", "", http.Header{"Authorization": {"Basic " + secret}}, false},
		{"Bearer of a wrong secret", "", http.Header{"Authorization": {"Bearer s3crex"}}, false},
		{"percent-encoded", "?token=%73%33%63%72%65%74", nil, true},
		{"right", "?token=" + secret, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, tc.query), tc.header)
			if conn != nil {
				conn.Close()
			}
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("response %v, err %v; want 401", resp, err)
			}
			body, _ := io.ReadAll(resp.Body)
			var hdr bytes.Buffer
			resp.Header.Write(&hdr)
			if strings.Contains(string(body)+hdr.String(), secret) {
				t.Errorf("the refusal carries the secret: %s %s", hdr.String(), body)
			}
			resp.Header.Del("Date")
			hdr.Reset()
			resp.Header.Write(&hdr)
			refusals = append(refusals, hdr.String()+string(body))
		})
	}
	for _, r := range refusals[1:] {
		if r != refusals[0] {
			t.Errorf("refusals differ, which tells an attacker something:\n%s\n---\n%s", refusals[0], r)
			break
		}
	}
	stillServed(t, good)
	h.Close()
	logMu.Lock()
	defer logMu.Unlock()
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the hub logged its secret:\n%s", logs.String())
	}
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestHostileOrigins tries origins a browser page on another site (or a
// sandboxed one) would send, with the right token: all refused with 403.
// A page of a rebinding DNS name (its Host is its own name) passes the
// origin check, as it must, but still has no token.
func TestHostileOrigins(t *testing.T) {
	noLeak(t)
	_, srv := setup(t, &memSource{}, &hub.Options{AllowedOrigins: []string{"http://localhost:5173"}})
	good := bystander(t, srv)
	self := srv.Listener.Addr().String()
	for _, tc := range []struct {
		name, origin, host, query string
		want                      int
	}{
		{"foreign", "http://evil.example", "", "?token=s3cret", http.StatusForbidden},
		{"null", "null", "", "?token=s3cret", http.StatusForbidden},
		{"NULL", "NULL", "", "?token=s3cret", http.StatusForbidden},
		{"own host as a prefix", "http://" + self + ".evil.example", "", "?token=s3cret", http.StatusForbidden},
		{"own host in the path", "http://evil.example/" + self, "", "?token=s3cret", http.StatusForbidden},
		{"own host, other port", "http://127.0.0.1:1", "", "?token=s3cret", http.StatusForbidden},
		{"own host, ws scheme", "ws://" + self, "", "?token=s3cret", http.StatusForbidden},
		{"file page", "file://", "", "?token=s3cret", http.StatusForbidden},
		{"browser extension", "chrome-extension://abcdefgh", "", "?token=s3cret", http.StatusForbidden},
		{"empty", "", "", "?token=s3cret", http.StatusForbidden},
		{"allowed origin with a path", "http://localhost:5173/x", "", "?token=s3cret", http.StatusForbidden},
		{"allowed origin, other port", "http://localhost:5174", "", "?token=s3cret", http.StatusForbidden},
		{"DNS rebinding, no token", "http://evil.example:8000", "evil.example:8000", "", http.StatusUnauthorized},
		{"foreign, no token", "http://evil.example", "", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := http.Header{"Origin": {tc.origin}}
			u := wsURL(srv, tc.query)
			if tc.host != "" {
				header.Set("Host", tc.host)
			}
			status := handshakeStatus(t, u, header)
			if status != tc.want {
				t.Fatalf("status %d, want %d", status, tc.want)
			}
		})
	}
	stillServed(t, good)
}

// handshakeStatus sends an upgrade request by hand (so that Origin and Host
// are exactly as given) and returns the status.
func handshakeStatus(t *testing.T, rawURL string, header http.Header) int {
	t.Helper()
	u, _ := url.Parse(rawURL)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	host := u.Host
	if h := header.Get("Host"); h != "" {
		host = h
		header.Del("Host")
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", u.RequestURI(), host)
	header.Write(c)
	io.WriteString(c, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
