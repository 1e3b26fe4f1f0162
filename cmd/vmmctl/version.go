package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// clientVersion is vmmctl's own version.
const clientVersion = "0.1.0-dev"

// versionInfo is the JSON shape of `version -o json`.
type versionInfo struct {
	Client clientVersionInfo  `json:"client"`
	Server *serverVersionInfo `json:"server"`
}

type clientVersionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
}

type serverVersionInfo struct {
	Version string `json:"version"`
	Package string `json:"package"`
}

func newVersionCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show vmmctl's version and the server's",
		Long: `Show vmmctl's version and the server's (from the QMP greeting).

JSON fields (-o json):
  client.version  string  vmmctl version
  client.go       string  Go toolchain vmmctl was built with
  server          object  null when the server cannot be reached (exit 3)
  server.version  string  QEMU-compatible version, e.g. "10.0.0"
  server.package  string  server package string, e.g. "vmmd 0.1.0-dev"`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := versionInfo{Client: clientVersionInfo{Version: clientVersion, Go: runtime.Version()}}
			c, connErr := o.connect(cmd.Context())
			if connErr == nil {
				if v := c.serverVersion(); v != nil {
					info.Server = &serverVersionInfo{Version: v.String(), Package: v.Package}
				}
				c.close()
			}
			if o.json() {
				if err := writeJSON(o.stdout, info); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(o.stdout, "Client: vmmctl %s (%s)\n", info.Client.Version, info.Client.Go)
				if info.Server != nil {
					fmt.Fprintf(o.stdout, "Server: %s (%s)\n", info.Server.Version, info.Server.Package)
				}
			}
			return connErr
		},
	}
}
