package block

import (
	"strings"
	"testing"
)

func TestParseNBDURI(t *testing.T) {
	tests := []struct {
		in   string
		want NBDAddress
	}{
		{"nbd://example.org/disk", NBDAddress{"tcp", "example.org:10809", "disk"}},
		{"nbd://example.org:10900/disk", NBDAddress{"tcp", "example.org:10900", "disk"}},
		{"nbd://example.org", NBDAddress{"tcp", "example.org:10809", ""}},
		{"nbd://[::1]:7000/a/b", NBDAddress{"tcp", "[::1]:7000", "a/b"}},
		{"nbd+tcp://10.0.0.1/x%20y", NBDAddress{"tcp", "10.0.0.1:10809", "x y"}},
		{"nbd+unix:///disk?socket=/run/nbd.sock", NBDAddress{"unix", "/run/nbd.sock", "disk"}},
		{"nbd+unix://?socket=/tmp/s", NBDAddress{"unix", "/tmp/s", ""}},
		{"nbd+unix:///e?socket=/tmp/a%26b%20c%25d%2Be%3Df", NBDAddress{"unix", "/tmp/a&b c%d+e=f", "e"}},
	}
	for _, tt := range tests {
		got, err := ParseNBDURI(tt.in)
		if err != nil {
			t.Errorf("ParseNBDURI(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseNBDURI(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if got.Network == "unix" && !strings.Contains(got.String(), "socket=/tmp/") && !strings.Contains(got.String(), "socket=/run/") {
			t.Errorf("String() = %q escapes the socket path's slashes", got.String())
		}
		again, err := ParseNBDURI(got.String())
		if err != nil || again != got {
			t.Errorf("round trip via %q = %+v, %v", got.String(), again, err)
		}
	}
}

func TestParseNBDURIErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nbd:///x", "needs a host"},
		{"nbd://h:0/x", `port "0"`},
		{"nbd://h:/x", "empty port"},
		{"nbd://h/x?socket=/s", "query parameters are not allowed"},
		{"nbd://u@h/x", "user information"},
		{"nbd://h/x#f", "fragment"},
		{"nbd+unix:///x", "exactly one socket=PATH"},
		{"nbd+unix:///x?socket=/a&socket=/b", "exactly one socket=PATH"},
		{"nbd+unix:///x?socket=/a&foo=1", "only the socket query parameter"},
		{"nbd+unix://host/x?socket=/a", "must not name a host"},
		{"nbds://h/x", "TLS"},
		{"nbd+vsock://1/x", "unknown NBD scheme"},
		{"nbd:unix:/tmp/s", "legacy nbd: syntax"},
		{"nbd://h/" + strings.Repeat("x", 5000), "more than the protocol's 4096"},
	}
	for _, tt := range tests {
		_, err := ParseNBDURI(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseNBDURI(%.40q) error = %v, want %q", tt.in, err, tt.want)
		}
	}
}
