package machine

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnlyResumeStartsVCPUs keeps the gate sacred by construction: in all of
// vmmd's non-test Go code, startVCPUs is called from Resume and nowhere else,
// only startVCPUs and call wake a vCPU thread (a send on its reqs channel;
// call's requests carry an ioctl function, never a run), and VCPU.Run is
// called only from the vCPU run loop that startVCPUs drives.
func TestOnlyResumeStartsVCPUs(t *testing.T) {
	root := filepath.Join("..", "..")
	calls := map[string][]string{} // callee -> enclosing functions
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "build" || d.Name() == "test" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				// A send on a vCPU's reqs channel wakes its thread: to
				// enter KVM_RUN (startVCPUs) or to run an ioctl (call).
				if send, ok := n.(*ast.SendStmt); ok {
					if sel, ok := send.Chan.(*ast.SelectorExpr); ok && sel.Sel.Name == "reqs" {
						calls["reqs<-"] = append(calls["reqs<-"], path+":"+fn.Name.Name)
					}
				}
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
					switch sel.Sel.Name {
					case "startVCPUs", "Run":
						calls[sel.Sel.Name] = append(calls[sel.Sel.Name], path+":"+fn.Name.Name)
					}
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	starts := calls["startVCPUs"]
	if len(starts) != 1 || !strings.HasSuffix(starts[0], "control.go:Resume") {
		t.Errorf("startVCPUs must be called only by Resume; callers: %v", starts)
	}
	for _, c := range calls["reqs<-"] {
		if !strings.HasSuffix(c, "control.go:startVCPUs") && !strings.HasSuffix(c, "vcpu.go:call") {
			t.Errorf("a vCPU thread is woken outside startVCPUs and call: %s", c)
		}
	}
	if sends := calls["reqs<-"]; len(sends) != 2 {
		t.Errorf("senders on a vCPU's reqs channel: %v, want startVCPUs and call", sends)
	}
	for _, c := range calls["Run"] {
		if strings.Contains(c, filepath.Join("pkg", "machine")) && !strings.HasSuffix(c, "exits.go:run") {
			t.Errorf("KVM_RUN entered outside the vCPU run loop: %s", c)
		}
	}
}
