// Command pause is the sandbox ("infra") container of every pod: it holds the pod's
// namespaces open and does nothing else, like registry.k8s.io/pause.
//
// It is PID 1 of the pod when the pod shares its PID namespace, so it must reap
// children that other containers leave behind; otherwise they stay zombies until
// the pod dies. It exits 0 on SIGINT or SIGTERM, which is how the runtime stops a
// sandbox. Built static (CGO_ENABLED=0) by hack/build-bundle.sh and packed into an
// OCI image by kubeforge itself, so no registry is ever needed.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped by the build (-X main.version=3.10).
var version = "dev"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Printf("pause version %s (kubeforge)\n", version)
		return
	}
	if os.Getpid() != 1 {
		// Same warning as upstream's pause: outside a PID namespace it reaps nothing
		// of interest, but it still works as a placeholder process.
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		switch s {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", s)
			os.Exit(0)
		}
	}
}

// reap collects every exited child. Signals coalesce, so one SIGCHLD may stand for
// several children: loop until none is left.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
