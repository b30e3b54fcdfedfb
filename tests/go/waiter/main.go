// A Go program that waits for signals from outside (like a server waiting for its
// shutdown signal) while other goroutines keep the runtime busy: it prints "ready", then
// one line per signal received through os/signal, and exits 0 after SIGTERM.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

var sink [][]byte

func churn() {
	for i := 0; ; i++ {
		sink = append(sink, make([]byte, 1024))
		if len(sink) > 1000 {
			sink = nil
		}
		if i%1000 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

func main() {
	runtime.GOMAXPROCS(2)
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGUSR1, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go churn()
	fmt.Println("ready")
	for s := range c {
		fmt.Printf("got %v\n", s)
		if s == syscall.SIGTERM {
			fmt.Println("exiting with 0")
			os.Exit(0)
		}
	}
}
