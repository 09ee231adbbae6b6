package clash

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/proxywatch/proxywatch"
)

// conn is the JSON of one connection in a /connections snapshot.
type conn struct {
	ID             string    `json:"id"`
	Metadata       metadata  `json:"metadata"`
	Upload         uint64    `json:"upload"`
	Download       uint64    `json:"download"`
	Start          time.Time `json:"start"`
	Chains         []string  `json:"chains"`
	ProviderChains []string  `json:"providerChains"`
	Rule           string    `json:"rule"`
	RulePayload    string    `json:"rulePayload"`
	Proxywatch     extra     `json:"proxywatch"`
}

// metadata is Clash's connection metadata, filled with what a forward
// proxy knows (CLASH.md, "Connections").
type metadata struct {
	Network           string    `json:"network"`
	Type              string    `json:"type"`
	SourceIP          string    `json:"sourceIP"`
	DestinationIP     string    `json:"destinationIP"`
	SourceGeoIP       *[]string `json:"sourceGeoIP"`
	DestinationGeoIP  *[]string `json:"destinationGeoIP"`
	SourceIPASN       string    `json:"sourceIPASN"`
	DestinationIPASN  string    `json:"destinationIPASN"`
	SourcePort        string    `json:"sourcePort"`
	DestinationPort   string    `json:"destinationPort"`
	InboundIP         string    `json:"inboundIP"`
	InboundPort       string    `json:"inboundPort"`
	InboundName       string    `json:"inboundName"`
	InboundUser       string    `json:"inboundUser"`
	Host              string    `json:"host"`
	DNSMode           string    `json:"dnsMode"`
	UID               uint32    `json:"uid"`
	Process           string    `json:"process"`
	ProcessPath       string    `json:"processPath"`
	SpecialProxy      string    `json:"specialProxy"`
	SpecialRules      string    `json:"specialRules"`
	RemoteDestination string    `json:"remoteDestination"`
	DSCP              uint8     `json:"dscp"`
	SniffHost         string    `json:"sniffHost"`
}

// extra carries what proxywatch knows beyond Clash's fields; dashboards
// show it in their raw connection view.
type extra struct {
	Protocol string  `json:"protocol"`
	Method   string  `json:"method,omitempty"`
	URL      string  `json:"url,omitempty"`
	Parent   string  `json:"parent,omitempty"`
	Status   int     `json:"status,omitempty"`
	UpRate   float64 `json:"upRate"`
	DownRate float64 `json:"downRate"`
}

// inboundType maps a proxywatch protocol onto Clash's inbound type: a plain
// proxied request is "HTTP" and a CONNECT tunnel "HTTPS", as Clash names
// them; the kinds Clash has no name for keep proxywatch's.
func inboundType(p proxywatch.Protocol) string {
	switch p {
	case proxywatch.ProtoHTTP:
		return "HTTP"
	case proxywatch.ProtoTunnel:
		return "HTTPS"
	}
	return string(p)
}

func (c *API) connFrom(ci proxywatch.ConnInfo) conn {
	srcIP, srcPort, err := net.SplitHostPort(ci.Client)
	if err != nil {
		srcIP, srcPort = ci.Client, "0"
	}
	host, dstPort, err := net.SplitHostPort(ci.Host)
	if err != nil {
		host, dstPort = ci.Host, defaultPort(ci.URL)
	}
	dstIP := ""
	if ip := net.ParseIP(strings.SplitN(host, "%", 2)[0]); ip != nil {
		dstIP, host = host, "" // Clash's host is the domain name; an IP goes to destinationIP
	}
	cc := conn{
		ID: strconv.FormatInt(int64(ci.ID), 10),
		Metadata: metadata{
			Network:         "tcp",
			Type:            inboundType(ci.Protocol),
			SourceIP:        srcIP,
			DestinationIP:   dstIP,
			SourcePort:      srcPort,
			DestinationPort: dstPort,
			InboundIP:       c.inboundIP,
			InboundPort:     strconv.Itoa(c.inboundPt),
			InboundName:     "proxywatch",
			Host:            host,
			DNSMode:         "normal",
		},
		Upload:         ci.Up,
		Download:       ci.Down,
		Start:          ci.Start,
		Chains:         []string{direct},
		ProviderChains: []string{},
		Rule:           matchRule.Type,
		RulePayload:    matchRule.Payload,
		Proxywatch: extra{
			Protocol: string(ci.Protocol),
			Method:   ci.Method,
			URL:      ci.URL,
			Status:   ci.Status,
			UpRate:   ci.UpRate,
			DownRate: ci.DownRate,
		},
	}
	if ci.Parent != 0 {
		cc.Proxywatch.Parent = strconv.FormatInt(int64(ci.Parent), 10)
	}
	return cc
}

// defaultPort is the port a URL without one implies.
func defaultPort(raw string) string {
	u, err := url.Parse(raw)
	if err == nil && (u.Scheme == "https" || u.Scheme == "wss") {
		return "443"
	}
	return "80"
}

// snapshot is the JSON of a /connections message.
type snapshot struct {
	DownloadTotal uint64 `json:"downloadTotal"`
	UploadTotal   uint64 `json:"uploadTotal"`
	Connections   []conn `json:"connections"` // never null
	Memory        uint64 `json:"memory"`
}

func (c *API) snapshot() snapshot {
	live := c.src.Connections()
	st := c.src.Stats()
	s := snapshot{
		DownloadTotal: st.Down,
		UploadTotal:   st.Up,
		Connections:   make([]conn, 0, len(live)),
		Memory:        memoryInUse(),
	}
	for _, ci := range live {
		s.Connections = append(s.Connections, c.connFrom(ci))
	}
	return s
}
