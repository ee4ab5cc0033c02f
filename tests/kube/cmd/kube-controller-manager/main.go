// Command kube-controller-manager is the upstream controller manager; the tests run only
// the controllers a cluster without nodes needs (garbage collection, namespaces).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
