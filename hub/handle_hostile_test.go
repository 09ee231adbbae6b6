package hub

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/proxywatch/proxywatch"
)

// FuzzHandle feeds arbitrary client frames to the hub's message decoder and
// dispatcher, as a socket's read loop does. Whatever the frame, the hub must
// not panic and must answer once, with well-formed JSON frames of a known
// type, echoing the frame's ref when it is a valid one, and with an answer
// not much larger than the frame (no amplification beyond what the state of
// the proxy holds). The one thing that may follow the answer is the
// snapshot of the connections a subscribe to them brings.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		`{"action":"subscribe","topics":["traffic","connections","logs","events"],"logLevel":"DEBUG","ref":"r1"}`,
		`{"action":"subscribe","topics":["logs"],"since":0,"ref":7}`,
		`{"action":"subscribe","topics":"traffic"}`,
		`{"action":"subscribe","logLevel":"LOUD"}`,
		`{"action":"closeAllConnections","ref":-1.5e3}`,
		`{"action":"closeConnection","id":42}`,
		`{"action":"closeConnection","id":"42"}`,
		`{"action":"closeConnection","id":1e999}`,
		`{"action":"closeConnections","ids":[1,2,3]}`,
		`{"action":"closeConnections","filter":{"host":"a","protocol":"HTTP","client":"127.0.0.1"}}`,
		`{"action":"closeConnections","filter":{},"ids":[1]}`,
		`{"action":"getHistory","limit":-1}`,
		`{"action":"getHistory","limit":5,"ref":{"a":1}}`,
		`{"action":"explode","ref":"x"}`,
		`{"action":` + `"` + strings.Repeat("a", 200) + `"}`,
		`{}`, `null`, `[]`, `"subscribe"`, `not json`, `{"action":`, "{\"action\":\"\xff\"}",
		`{"action":"subscribe","action":"getHistory"}`,
		strings.Repeat("[", 1000),
	} {
		f.Add([]byte(s))
	}
	p := proxywatch.New(nil)
	h := newHub(p, &Options{Token: "fuzz"})
	f.Cleanup(func() {
		h.Close()
		p.Close()
	})
	f.Fuzz(func(t *testing.T, frame []byte) {
		c := newClient(h, nil) // never registered: it gets answers only
		h.handle(c, frame)
		var answers []outgoing
		for len(c.send) > 0 {
			answers = append(answers, <-c.send)
		}
		if len(answers) == 2 && answers[1].frame != nil {
			var m Message
			if json.Unmarshal(answers[1].frame, &m) != nil || m.Type != TypeConnections {
				t.Fatalf("second answer to %q: %s", frame, answers[1].frame)
			}
			answers = answers[:1]
		}
		if len(answers) != 1 {
			t.Fatalf("%d answers to %q, want 1", len(answers), frame)
		}
		frames := answers[0].batch
		if answers[0].frame != nil {
			frames = [][]byte{answers[0].frame}
		}
		size := 0
		for i, b := range frames {
			size += len(b)
			var m Message
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("answer frame %d is not JSON: %q", i, b)
			}
			switch m.Type {
			case TypeSubscribed, TypeResult, TypeHistory, TypeError, TypeLog, TypeLogsDropped:
			default:
				t.Fatalf("answer frame of type %q: %s", m.Type, b)
			}
			if i == 0 && len(m.Ref) > 0 && validRef(m.Ref) == nil {
				t.Fatalf("answer ref %s is not a string or number", m.Ref)
			}
			if i == 0 {
				// A valid ref in a JSON object comes back as it was sent.
				var obj map[string]json.RawMessage
				if json.Unmarshal(frame, &obj) == nil {
					if ref := validRef(obj["ref"]); ref != nil && string(m.Ref) != string(ref) {
						t.Fatalf("ref %s answered with ref %s: %s", ref, m.Ref, b)
					}
				}
			}
		}
		if size > len(frame)+1024 {
			t.Fatalf("a frame of %d bytes got %d bytes of answer", len(frame), size)
		}
	})
}
