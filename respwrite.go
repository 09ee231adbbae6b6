package proxywatch

import (
	"io"
	"net/http"
)

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
