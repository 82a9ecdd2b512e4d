// Command kubeimages writes the test images (internal/testutil/images:
// busybox and pause) as OCI tarballs into a directory, one path a line,
// for hack/kube-up.sh to import into its containerd: the cluster reaches
// no registry.
//
//	go run ./hack/kubeimages DIR
package main

import (
	"fmt"
	"os"

	"github.com/virtcontainers/vc/internal/testutil/images"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kubeimages DIR")
		os.Exit(2)
	}
	paths, err := images.WriteAll(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeimages:", err)
		os.Exit(1)
	}
	for _, p := range paths {
		fmt.Println(p)
	}
}
