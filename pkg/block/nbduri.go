package block

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// DefaultNBDPort is the IANA port for NBD, used when an nbd:// URI has none.
const DefaultNBDPort = 10809

// maxExportName is the NBD protocol's limit on export name length.
const maxExportName = 4096

// NBDAddress is where an NBD export lives.
type NBDAddress struct {
	// Network is "tcp" or "unix".
	Network string
	// Address is HOST:PORT for tcp, the socket path for unix.
	Address string
	// Export is the export name ("" is the server's default export).
	Export string
}

// String renders the address as a URI in QEMU's syntax.
func (a NBDAddress) String() string {
	exp := (&url.URL{Path: "/" + a.Export}).EscapedPath()
	if a.Network == "unix" {
		return "nbd+unix://" + exp + "?socket=" + escapeQueryValue(a.Address)
	}
	return "nbd://" + a.Address + exp
}

// escapeQueryValue escapes only what would change the meaning of a query
// value, so socket paths stay readable ("socket=/run/nbd.sock", as QEMU
// writes them).
func escapeQueryValue(s string) string {
	return strings.NewReplacer("%", "%25", "&", "%26", "#", "%23", "+", "%2B", ";", "%3B", " ", "%20", "=", "%3D").Replace(s)
}

// isNBDURI tells NBD URIs from paths: anything starting with "nbd:",
// "nbd+" or "nbds" followed by a colon is meant as NBD.
func isNBDURI(s string) bool {
	l := strings.ToLower(s)
	if strings.HasPrefix(l, "nbd:") {
		return true
	}
	if i := strings.IndexByte(l, ':'); i > 0 {
		scheme := l[:i]
		return strings.HasPrefix(scheme, "nbd+") || strings.HasPrefix(scheme, "nbds")
	}
	return false
}

// ParseNBDURI parses an NBD URI as QEMU writes them:
// nbd://HOST[:PORT]/EXPORT (nbd+tcp:// too) and nbd+unix:///EXPORT?socket=PATH.
// TLS (nbds) and QEMU's legacy "nbd:host:port" syntax are refused.
func ParseNBDURI(s string) (NBDAddress, error) {
	if l := strings.ToLower(s); strings.HasPrefix(l, "nbd:") && !strings.HasPrefix(l, "nbd://") {
		return NBDAddress{}, errors.New("the legacy nbd: syntax is not supported: use nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH")
	}
	u, err := url.Parse(s)
	if err != nil {
		return NBDAddress{}, fmt.Errorf("not a valid URI: %w", err)
	}
	if u.User != nil {
		return NBDAddress{}, errors.New("user information is not allowed in an NBD URI")
	}
	if u.Fragment != "" || u.RawFragment != "" || strings.Contains(s, "#") {
		return NBDAddress{}, errors.New("a fragment (#...) is not allowed in an NBD URI")
	}
	if u.Opaque != "" {
		return NBDAddress{}, errors.New("an NBD URI needs // after the scheme")
	}
	export := strings.TrimPrefix(u.Path, "/")
	if len(export) > maxExportName {
		return NBDAddress{}, fmt.Errorf("export name is %d bytes long, more than the protocol's %d", len(export), maxExportName)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return NBDAddress{}, fmt.Errorf("bad query: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "nbd", "nbd+tcp":
		if len(q) != 0 {
			return NBDAddress{}, errors.New("query parameters are not allowed in nbd:// URIs")
		}
		host := u.Hostname()
		if host == "" {
			return NBDAddress{}, errors.New("nbd:// URI needs a host")
		}
		port := DefaultNBDPort
		if p := u.Port(); p != "" {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return NBDAddress{}, fmt.Errorf("port %q is not a number from 1 to 65535", p)
			}
			port = int(n)
		} else if strings.HasSuffix(u.Host, ":") {
			return NBDAddress{}, errors.New("empty port after ':'")
		}
		return NBDAddress{Network: "tcp", Address: net.JoinHostPort(host, strconv.Itoa(port)), Export: export}, nil
	case "nbd+unix":
		if u.Host != "" {
			return NBDAddress{}, fmt.Errorf("nbd+unix URI must not name a host (%q): write nbd+unix:///EXPORT?socket=PATH", u.Host)
		}
		socks := q["socket"]
		if len(socks) != 1 || socks[0] == "" {
			return NBDAddress{}, errors.New("nbd+unix URI needs exactly one socket=PATH query parameter")
		}
		if len(q) != 1 {
			return NBDAddress{}, errors.New("nbd+unix URI accepts only the socket query parameter")
		}
		if strings.IndexByte(socks[0], 0) >= 0 {
			return NBDAddress{}, errors.New("socket path contains a NUL byte")
		}
		return NBDAddress{Network: "unix", Address: socks[0], Export: export}, nil
	case "nbds", "nbds+tcp", "nbds+unix":
		return NBDAddress{}, fmt.Errorf("TLS (%s://) is not supported", u.Scheme)
	}
	return NBDAddress{}, fmt.Errorf("unknown NBD scheme %q: use nbd:// or nbd+unix://", u.Scheme)
}
