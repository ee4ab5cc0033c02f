// Command pause is the pod sandbox's process for the node test tier, doing what the
// upstream pause image does (build/pause/linux/pause.c): hold the pod's namespaces, reap
// orphaned children as PID 1, and exit on SIGINT or SIGTERM. Static (CGO off), so its
// image needs no other file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
