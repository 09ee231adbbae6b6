package clash

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// The proxy "nodes" and groups: proxywatch connects every connection itself,
// which Clash calls DIRECT, and Clash dashboards need the GLOBAL selector
// group to exist (zashboard reads proxies.GLOBAL.all).
const (
	direct = "DIRECT"
	global = "GLOBAL"
)

// proxy is the JSON of a proxy or proxy group in /proxies.
type proxy struct {
	Name    string         `json:"name"`
	Type    string         `json:"type"`
	Alive   bool           `json:"alive"`
	UDP     bool           `json:"udp"`
	XUDP    bool           `json:"xudp"`
	TFO     bool           `json:"tfo"`
	MPTCP   bool           `json:"mptcp"`
	SMUX    bool           `json:"smux"`
	UOT     bool           `json:"uot"`
	History []struct{}     `json:"history"`
	Extra   map[string]any `json:"extra"`
	ID      string         `json:"id"`
	All     []string       `json:"all,omitempty"`
	Now     string         `json:"now,omitempty"`
	Hidden  bool           `json:"hidden"`
	Icon    string         `json:"icon"`
	TestURL string         `json:"testUrl"`
	Fixed   string         `json:"fixed"`
}

func proxyNodes() map[string]proxy {
	return map[string]proxy{
		direct: {Name: direct, Type: "Direct", Alive: true, History: []struct{}{}, Extra: map[string]any{}},
		global: {Name: global, Type: "Selector", Alive: true, History: []struct{}{}, Extra: map[string]any{},
			All: []string{direct}, Now: direct},
	}
}

// serveProxies answers /proxies... and /group...: DIRECT and GLOBAL exist,
// GLOBAL can be "switched" to DIRECT only, and latency tests are refused
// (there is no proxy node whose latency would mean anything).
func (c *API) serveProxies(w http.ResponseWriter, r *http.Request, method string, seg []string) {
	proxies := proxyNodes()
	isGroup := seg[0] == "group"
	switch {
	case len(seg) == 1:
		if method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "Method not allowed")
			return
		}
		if isGroup {
			writeJSON(w, http.StatusOK, map[string][]proxy{"proxies": {proxies[global]}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]map[string]proxy{"proxies": proxies})
		return
	}
	pr, ok := proxies[seg[1]]
	if !ok || (isGroup && pr.All == nil) {
		writeError(w, http.StatusNotFound, "Resource not found")
		return
	}
	switch {
	case len(seg) == 2 && method == http.MethodGet:
		writeJSON(w, http.StatusOK, pr)
	case len(seg) == 2 && method == http.MethodPut && !isGroup:
		var body struct {
			Name string `json:"name"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, "Body invalid")
			return
		}
		if pr.All == nil || body.Name != direct {
			writeError(w, http.StatusBadRequest, "Selector update error: proxywatch only has DIRECT")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case len(seg) == 2 && method == http.MethodDelete && !isGroup:
		writeError(w, http.StatusBadRequest, "GLOBAL is a selector: nothing is fixed")
	case len(seg) == 3 && seg[2] == "delay" && method == http.MethodGet:
		writeUnsupported(w, "latency tests: it connects directly, there is no proxy node to test")
	case len(seg) == 2 || len(seg) == 3:
		writeError(w, http.StatusMethodNotAllowed, "Method not allowed")
	default:
		writeError(w, http.StatusNotFound, "Resource not found")
	}
}

// rule is the JSON of a rule in /rules.
type rule struct {
	Index   int    `json:"index"`
	Type    string `json:"type"`
	Payload string `json:"payload"`
	Proxy   string `json:"proxy"`
	Size    int    `json:"size"`
}

// matchRule is the one rule that describes proxywatch: every connection
// goes DIRECT.
var matchRule = rule{Type: "Match", Payload: "", Proxy: direct, Size: -1}

// config is the JSON of GET /configs.
type config struct {
	Port           int      `json:"port"`
	SocksPort      int      `json:"socks-port"`
	RedirPort      int      `json:"redir-port"`
	TProxyPort     int      `json:"tproxy-port"`
	MixedPort      int      `json:"mixed-port"`
	Tun            tun      `json:"tun"`
	AllowLAN       bool     `json:"allow-lan"`
	BindAddress    string   `json:"bind-address"`
	Mode           string   `json:"mode"`
	Modes          []string `json:"modes"`
	ModeList       []string `json:"mode-list"`
	LogLevel       string   `json:"log-level"`
	IPv6           bool     `json:"ipv6"`
	InterfaceName  string   `json:"interface-name"`
	Sniffing       bool     `json:"sniffing"`
	TCPConcurrent  bool     `json:"tcp-concurrent"`
	Authentication []string `json:"authentication"`
}

type tun struct {
	Enable bool `json:"enable"`
}

func (c *API) configs() config {
	return config{
		Port:           c.inboundPt,
		AllowLAN:       c.allowLAN,
		BindAddress:    c.bindAddr,
		Mode:           "direct",
		Modes:          []string{"direct"},
		ModeList:       []string{"direct"},
		LogLevel:       levelName(c.currentLevel()),
		IPv6:           true,
		Authentication: []string{},
	}
}

func (c *API) currentLevel() slog.Level {
	if c.logLevel == nil {
		return slog.LevelDebug
	}
	return c.logLevel.Level()
}

// patchConfigs applies the settings it can: "log-level" when the Proxy's
// level is a *slog.LevelVar, and "mode" when it is already "direct". Any
// other key refuses the whole request, and nothing is changed.
func (c *API) patchConfigs(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Body invalid")
		return
	}
	var setLevel func()
	for key, raw := range body {
		var s string
		switch key {
		case "log-level":
			lv, ok := c.logLevel.(*slog.LevelVar)
			if !ok {
				writeError(w, http.StatusBadRequest, "log-level is fixed by the program embedding proxywatch")
				return
			}
			var l slog.Level
			if json.Unmarshal(raw, &s) != nil || !parseLevelInto(s, &l) || l == levelSilent {
				writeError(w, http.StatusBadRequest, "Body invalid")
				return
			}
			setLevel = func() { lv.Set(l) }
		case "mode":
			if json.Unmarshal(raw, &s) != nil || !strings.EqualFold(s, "direct") {
				writeError(w, http.StatusBadRequest, "proxywatch only has mode direct")
				return
			}
		default:
			writeError(w, http.StatusBadRequest, "proxywatch cannot change "+strconv.Quote(key))
			return
		}
	}
	if setLevel != nil {
		setLevel()
	}
	w.WriteHeader(http.StatusNoContent)
}
