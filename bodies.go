package proxywatch

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
)

// reqBody counts a request body as the upstream reads it (up).
type reqBody struct {
	io.ReadCloser
	e *entry
}

func (b *reqBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.e.up.Add(uint64(n))
	}
	if err != nil {
		if isEOF(err) {
			b.e.watchClient()
		} else {
			b.e.reqErr.CompareAndSwap(nil, boxErr(err))
		}
	}
	return n, err
}

// respBody counts a response body as goproxy copies it to the client (down).
// Closing it is idempotent: goproxy closes it twice in plain mode.
type respBody struct {
	io.ReadCloser
	e    *entry
	p    *Proxy
	once sync.Once
}

func (b *respBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		b.e.down.Add(uint64(n))
	}
	if err != nil {
		if isEOF(err) {
			b.e.bodyDone.Store(true)
		} else {
			b.p.upstreamBroke(b.e, err)
		}
	}
	return n, err
}

func (b *respBody) Close() error {
	var err error
	b.once.Do(func() { err = b.ReadCloser.Close() })
	return err
}

// WriteTo copies the response body to w, the client's http.ResponseWriter
// when goproxy copies a plain response with io.Copy (io.Copy prefers the
// source's WriteTo to the destination's ReadFrom).
//
// Why: net/http's ReadFrom writes the response head with the first 512
// bytes of the body, then the rest with another system call, so a small
// response cost two writes to the client. Here the first read of the body
// goes into the ResponseWriter's buffer; a body that ends with that read
// (every small one: net/http returns the last bytes of a body with io.EOF)
// leaves with the head in one write when the handler returns. A body that
// goes on is flushed at once, head and first bytes, and the rest streams as
// it arrives through ReadFrom, as before, so a slow upstream's bytes are not
// held back.
func (b *respBody) WriteTo(w io.Writer) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	n, rerr := b.Read(*buf)
	var written int64
	var werr error
	if n > 0 {
		var m int
		m, werr = w.Write((*buf)[:n])
		written = int64(m)
		if werr == nil && m < n {
			werr = io.ErrShortWrite
		}
	}
	copyBufs.Put(buf)
	switch {
	case werr != nil:
		return written, werr
	case rerr == io.EOF:
		return written, nil
	case rerr != nil:
		return written, rerr
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	m, err := io.Copy(w, readerOnly{b})
	return written + m, err
}

// readerOnly hides a WriteTo method so io.Copy falls back to the
// destination's ReadFrom or to Read.
type readerOnly struct{ io.Reader }

// wsBody is the upstream side of a WebSocket after the 101: goproxy reads
// from it (down) and writes the client's frames into it (up). It must keep
// io.Writer, or goproxy refuses the upgrade.
type wsBody struct {
	io.ReadWriteCloser
	e    *entry
	once sync.Once
}

func (b *wsBody) Read(p []byte) (int, error) {
	n, err := b.ReadWriteCloser.Read(p)
	if n > 0 {
		b.e.down.Add(uint64(n))
	}
	if err != nil {
		b.failed(err)
	}
	return n, err
}

func (b *wsBody) Write(p []byte) (int, error) {
	n, err := b.ReadWriteCloser.Write(p)
	if n > 0 {
		b.e.up.Add(uint64(n))
	}
	if err != nil {
		b.failed(err)
	}
	return n, err
}

// failed notes an upstream failure (a reset, not a clean close; not a close
// on this side, which goproxy does once either direction ended).
func (b *wsBody) failed(err error) {
	if !isEOF(err) && !errors.Is(err, net.ErrClosed) {
		b.e.bodyErr.CompareAndSwap(nil, boxErr(err))
	}
}

func (b *wsBody) Close() error {
	var err error
	b.once.Do(func() { err = b.ReadWriteCloser.Close() })
	return err
}

// streamBody is the upstream body of a chunked MITM response: its reads
// send what goproxy wrote of the bytes read before (holdStream).
type streamBody struct {
	*respBody
}

func (b streamBody) Read(p []byte) (int, error) {
	b.e.client.holdStream()
	return b.respBody.Read(p)
}
