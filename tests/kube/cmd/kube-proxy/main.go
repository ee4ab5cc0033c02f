// Command kube-proxy is the upstream Service proxy, for the node test tier (`just test-node`):
// it programs the node's Service and NodePort rules inside the run's network namespace.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
