// Command kubeforge turns plain Linux hosts into a Kubernetes cluster the "binary" way.
package main

import (
	"os"

	"github.com/kubeforge/kubeforge/cmd"
)

func main() {
	if err := cmd.NewRootCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
